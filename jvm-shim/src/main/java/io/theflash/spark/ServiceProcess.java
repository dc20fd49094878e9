package io.theflash.spark;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.attribute.PosixFilePermissions;
import java.security.SecureRandom;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Base64;
import java.util.Deque;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The theflash service a catalog configured with {@code pd} and {@code store} (and no
 * {@code server}) starts for itself, as TiSpark needs only PD: {@code <python> -m
 * pyspark_theflash serve --store S --upstream pd://PD --port 0 --token-file F
 * --stop-on-stdin-close}, a child process of the driver. One per store, PD address,
 * interpreter and address in this JVM, shared by every session's catalog.
 *
 * <ul>
 *   <li>It answers only calls with a bearer token drawn here (handed over in a file only this
 *       user can read, deleted once the service has read it); the catalog's reads send it,
 *       executors get it inside the planned partitions.
 *   <li>It listens on 127.0.0.1 under a local master; under a cluster master on
 *       {@code spark.driver.bindAddress} (else {@code spark.driver.host}), advertised at
 *       {@code spark.driver.host}, where executors already reach the driver.
 *   <li>It checks at start that PD answers and is the cluster the store replicates; a wrong
 *       address, a missing store, an interpreter without this package fail the catalog's first
 *       use with the service's own one-line reason.
 *   <li>It ends with this JVM: a shutdown hook closes its standard input and waits for it; a
 *       JVM that is killed closes that pipe too, and the service stops on its end.
 *   <li>Its output goes to this JVM's log (logger {@code io.theflash.spark.ServiceProcess}): its
 *       standard error at WARN (the service prints only warnings and errors there).
 * </ul>
 */
final class ServiceProcess {
  private static final Logger LOG = LoggerFactory.getLogger(ServiceProcess.class);
  private static final Pattern HTTP = Pattern.compile("\\bhttp http://\\S+:(\\d+)");
  private static final Map<List<String>, ServiceProcess> RUNNING = new LinkedHashMap<>();
  private static boolean hooked;
  private static final int TAIL_LINES = 20;

  /** What a catalog asks for: its name (for messages) and the service's settings. */
  static final class Settings {
    final String catalog;
    final String python;
    /** Where {@link #python} came from, for messages ("spark.sql.catalog.theflash.python", ...). */
    final String pythonSource;
    final String store;
    final String pd;
    final String bindHost;
    final String advertisedHost;
    final long startTimeoutMs;

    Settings(String catalog, String python, String pythonSource, String store, String pd, String bindHost,
        String advertisedHost, long startTimeoutMs) {
      this.catalog = catalog;
      this.python = python;
      this.pythonSource = pythonSource;
      this.store = store;
      this.pd = pd;
      this.bindHost = bindHost;
      this.advertisedHost = advertisedHost;
      this.startTimeoutMs = startTimeoutMs;
    }

    List<String> key() {
      return Arrays.asList(python, store, pd, bindHost, advertisedHost);
    }

    String conf(String option) {
      return "spark.sql.catalog." + catalog + "." + option;
    }
  }

  private final Process process;
  /** The service's HTTP address, http://host:port. */
  final String url;
  /** The bearer token every call must carry. */
  final String token;
  private final Deque<String> stderrTail;

  private ServiceProcess(Process process, String url, String token, Deque<String> stderrTail) {
    this.process = process;
    this.url = url;
    this.token = token;
    this.stderrTail = stderrTail;
  }

  long pid() {
    return process.pid();
  }

  /**
   * The running service of these settings: started on first use, started again if it has
   * exited since (its exit status and last words logged).
   */
  static ServiceProcess obtain(Settings settings) {
    synchronized (RUNNING) {
      ServiceProcess running = RUNNING.get(settings.key());
      if (running != null && running.process.isAlive()) return running;
      if (running != null) {
        LOG.warn("the theflash service catalog {} started (pid {}) exited with status {}{}; starting it again",
            settings.catalog, running.pid(), running.process.exitValue(), running.lastWords());
      }
      if (!hooked) {
        Runtime.getRuntime().addShutdownHook(new Thread(ServiceProcess::stopAll, "theflash-service-stop"));
        hooked = true;
      }
      ServiceProcess started = start(settings);
      RUNNING.put(settings.key(), started);
      return started;
    }
  }

  private static ServiceProcess start(Settings s) {
    String token = newToken();
    Path dir = null;
    Process process = null;
    List<String> command = new ArrayList<>(Arrays.asList(s.python, "-m", "pyspark_theflash", "serve",
        "--store", s.store, "--upstream", s.pd, "--host", s.bindHost, "--port", "0"));
    String shown = String.join(" ", command);  // as messages show it: without the token file
    try {
      dir = Files.createTempDirectory("theflash-catalog-",
          PosixFilePermissions.asFileAttribute(PosixFilePermissions.fromString("rwx------")));
      Path tokenFile = dir.resolve("token");
      Files.write(tokenFile, (token + "\n").getBytes(StandardCharsets.US_ASCII));
      command.addAll(Arrays.asList("--token-file", tokenFile.toString(), "--stop-on-stdin-close"));
      ProcessBuilder builder = new ProcessBuilder(command);
      builder.environment().put("PYTHONUNBUFFERED", "1");
      try {
        process = builder.start();
      } catch (IOException e) {
        throw new UserErrorException(failure(s, "cannot run " + s.python + " (" + s.pythonSource + "): "
            + e.getMessage() + "; set " + s.conf("python") + " to a Python that has pyspark_theflash installed "
            + "(the venv's bin/python)", shown), e);
      }
      Deque<String> tail = new ArrayDeque<>();
      CompletableFuture<Integer> port = new CompletableFuture<>();
      Thread out = drain(process.getInputStream(), "stdout", process, line -> {
        Matcher m = HTTP.matcher(line);
        if (!port.isDone() && m.find()) port.complete(Integer.parseInt(m.group(1)));
        LOG.info("theflash service of catalog {}: {}", s.catalog, line);
      });
      Thread err = drain(process.getErrorStream(), "stderr", process, line -> {
        synchronized (tail) {
          tail.addLast(line);
          while (tail.size() > TAIL_LINES) tail.removeFirst();
        }
        if (port.isDone()) LOG.warn("theflash service of catalog {}: {}", s.catalog, line);
      });
      int httpPort = awaitPort(s, shown, process, port, err, tail);
      String url = "http://" + (s.advertisedHost.contains(":") ? "[" + s.advertisedHost + "]" : s.advertisedHost)
          + ":" + httpPort;
      ServiceProcess started = new ServiceProcess(process, url, token, tail);
      try {
        new ServiceClient(url, BearerToken.fromOptions(token, null), s.store).tables();
      } catch (RuntimeException e) {
        throw new IllegalStateException(failure(s, "it started (pid " + process.pid() + ", " + url
            + ") but does not answer: " + e.getMessage(), shown), e);
      }
      LOG.info("catalog {}: started `{}` (pid {}), serving {} with a bearer token of its own; it stops with this JVM",
          s.catalog, shown, process.pid(), url);
      process = null;  // kept: started
      return started;
    } catch (IOException e) {
      throw new IllegalStateException(failure(s, "cannot hand it its token: " + e, shown), e);
    } finally {
      if (process != null) stop(process);
      deleteQuietly(dir);
    }
  }

  private static int awaitPort(Settings s, String shown, Process process, CompletableFuture<Integer> port, Thread err,
      Deque<String> tail) {
    long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(s.startTimeoutMs);
    while (true) {
      try {
        return port.get(100, TimeUnit.MILLISECONDS);
      } catch (TimeoutException e) {
        if (!process.isAlive()) {
          joinQuietly(err);
          int status = process.exitValue();
          String words = lastWords(tail);
          if (words.contains("No module named")) {
            // this interpreter lacks the package (or one it needs)
            throw new UserErrorException(failure(s, words + ": " + s.python + " (" + s.pythonSource + ") does "
                + "not have pyspark_theflash installed; set " + s.conf("python") + " to one that does (the venv's "
                + "bin/python)", shown));
          }
          if (status == 2 && !words.isEmpty()) {
            // the command refused its arguments (theflash's CommandError): a wrong pd, store, ...
            throw new UserErrorException(failure(s, words, shown));
          }
          throw new IllegalStateException(failure(s, "it exited with status " + status
              + (words.isEmpty() ? "" : ": " + words), shown));
        }
        if (System.nanoTime() > deadline) {
          String words = lastWords(tail);
          throw new IllegalStateException(failure(s, "it did not start serving within " + s.startTimeoutMs / 1000.0
              + " s" + (words.isEmpty() ? "" : " (it said: " + words + ")") + "; " + s.conf("start_timeout")
              + " gives it longer", shown));
        }
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new IllegalStateException(failure(s, "interrupted while waiting for it to start", shown), e);
      } catch (ExecutionException e) {
        throw new IllegalStateException(failure(s, String.valueOf(e.getCause()), shown), e.getCause());
      }
    }
  }

  private static String failure(Settings s, String why, String shown) {
    return "catalog " + s.catalog + " cannot start its theflash service: " + why + " (" + s.conf("pd") + "="
        + s.pd.replaceFirst("^pd://", "") + ", " + s.conf("store") + "=" + s.store + "; it ran `" + shown + "`)";
  }

  private String lastWords() {
    String words = lastWords(stderrTail);
    return words.isEmpty() ? "" : ": " + words;
  }

  /**
   * What the service said last on its standard error: the exception of a traceback (its last
   * line), else its last lines.
   */
  private static String lastWords(Deque<String> tail) {
    synchronized (tail) {
      List<String> lines = new ArrayList<>();
      boolean traceback = false;
      for (String line : tail) {
        if (line.startsWith("Traceback (most recent call last)")) traceback = true;
        if (!line.trim().isEmpty()) lines.add(line.trim());
      }
      if (lines.isEmpty()) return "";
      if (traceback) return lines.get(lines.size() - 1);
      return String.join(" | ", lines.subList(Math.max(0, lines.size() - 5), lines.size()));
    }
  }

  private static Thread drain(InputStream in, String what, Process process, java.util.function.Consumer<String> each) {
    Thread t = new Thread(() -> {
      try (BufferedReader r = new BufferedReader(new InputStreamReader(in, StandardCharsets.UTF_8))) {
        for (String line = r.readLine(); line != null; line = r.readLine()) each.accept(line);
      } catch (IOException ignored) {
        // the process is gone
      }
    }, "theflash-service-" + process.pid() + "-" + what);
    t.setDaemon(true);
    t.start();
    return t;
  }

  private static void stopAll() {
    List<ServiceProcess> all;
    synchronized (RUNNING) {
      all = new ArrayList<>(RUNNING.values());
      RUNNING.clear();
    }
    for (ServiceProcess p : all) stop(p.process);
  }

  /** Ends the service as its end of input does (it releases its sessions' leases), then by signal. */
  private static void stop(Process process) {
    try {
      process.getOutputStream().close();
      if (!process.waitFor(10, TimeUnit.SECONDS)) {
        process.destroy();
        if (!process.waitFor(5, TimeUnit.SECONDS)) process.destroyForcibly();
      }
    } catch (IOException e) {
      process.destroyForcibly();
    } catch (InterruptedException e) {
      process.destroyForcibly();
      Thread.currentThread().interrupt();
    }
  }

  private static String newToken() {
    byte[] bytes = new byte[32];
    new SecureRandom().nextBytes(bytes);
    return Base64.getUrlEncoder().withoutPadding().encodeToString(bytes);
  }

  private static void joinQuietly(Thread t) {
    try {
      t.join(2000);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }

  private static void deleteQuietly(Path dir) {
    if (dir == null) return;
    try {
      Files.deleteIfExists(dir.resolve("token"));
      Files.deleteIfExists(dir);
    } catch (IOException e) {
      LOG.warn("cannot delete {} (the token file of a theflash service): {}", dir, e.toString());
    }
  }

  @Override
  public String toString() {
    return "ServiceProcess(pid " + pid() + ", " + url + ")";
  }

  /**
   * The settings of catalog {@code catalog}'s service: {@code pd} (host:port[,host:port], a
   * {@code pd://} prefix allowed), the store directory (made absolute: the service and the
   * reads name the same one), the interpreter (option {@code python}, else Spark's
   * {@code spark.pyspark.python}, else {@code PYSPARK_PYTHON}, else {@code python3}: the Python
   * Spark runs its Python workers with) and {@code start_timeout} (seconds, default 60).
   */
  static Settings settings(String catalog, String pd, String store, String python, String startTimeout) {
    String address = pd.trim();
    if (address.isEmpty()) {
      throw new UserErrorException("spark.sql.catalog." + catalog + ".pd is empty: give PD's client address "
          + "host:port[,host:port] (2379 by default)");
    }
    if (!address.startsWith("pd://")) address = "pd://" + address;
    String pythonSource = "spark.sql.catalog." + catalog + ".python";
    String interpreter = blank(python) ? null : python.trim();
    if (interpreter == null) {
      interpreter = sparkConf("spark.pyspark.python");
      pythonSource = "spark.pyspark.python";
    }
    if (interpreter == null) {
      interpreter = blank(System.getenv("PYSPARK_PYTHON")) ? null : System.getenv("PYSPARK_PYTHON").trim();
      pythonSource = "PYSPARK_PYTHON";
    }
    if (interpreter == null) {
      interpreter = "python3";
      pythonSource = "the default: spark.sql.catalog." + catalog + ".python, spark.pyspark.python and PYSPARK_PYTHON "
          + "are unset";
    }
    long timeoutMs = 60_000;
    if (!blank(startTimeout)) {
      String t = startTimeout.trim().toLowerCase(java.util.Locale.ROOT);
      try {
        timeoutMs = (long) (Double.parseDouble(t.endsWith("s") ? t.substring(0, t.length() - 1) : t) * 1000);
      } catch (NumberFormatException e) {
        timeoutMs = -1;
      }
      if (timeoutMs <= 0) {
        throw new UserErrorException("spark.sql.catalog." + catalog + ".start_timeout=" + startTimeout
            + ": give seconds, such as 60 or 60s");
      }
    }
    String master = sparkConf("spark.master");
    String bind = "127.0.0.1";
    String advertised = "127.0.0.1";
    if (master != null && !master.startsWith("local")) {
      // executors read the streams: where they already reach the driver
      String host = sparkConf("spark.driver.host");
      if (host != null) advertised = host;
      String bindAddress = sparkConf("spark.driver.bindAddress");
      bind = bindAddress != null ? bindAddress : advertised;
    }
    return new Settings(catalog, interpreter, pythonSource, Paths.get(store.trim()).toAbsolutePath().normalize()
        .toString(), address, bind, advertised, timeoutMs);
  }

  /** A setting of this JVM's Spark application (its SparkConf), else of the active session, or null. */
  private static String sparkConf(String key) {
    org.apache.spark.SparkEnv env = org.apache.spark.SparkEnv.get();
    String value = env != null ? env.conf().get(key, null) : SessionConf.get(key);
    return blank(value) ? null : value.trim();
  }

  private static boolean blank(String s) {
    return s == null || s.trim().isEmpty();
  }
}
