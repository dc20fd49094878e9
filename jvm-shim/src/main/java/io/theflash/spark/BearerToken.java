package io.theflash.spark;

import java.io.IOException;
import java.io.Serializable;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;

/**
 * The bearer token a read sends to a service started with {@code theflash serve --token-file}:
 * option {@code token}, else option {@code token_file} (its first line, read by the driver), else
 * the session conf {@code theflash.token} (read by the driver), else the {@code THEFLASH_TOKEN}
 * environment variable of each JVM. Only {@link #header()} gives the
 * value; {@link #toString()} and every message name where it came from, never what it is.
 */
final class BearerToken implements Serializable {
  static final String ENVIRONMENT = "THEFLASH_TOKEN";

  private final String value;
  /** Where the token came from ("option token", "option token_file /etc/t", "THEFLASH_TOKEN"). */
  final String source;

  private BearerToken(String value, String source) {
    this.value = value;
    this.source = source;
    for (int i = 0; i < value.length(); i++) {
      char c = value.charAt(i);
      if (c < 0x21 || c > 0x7e) {
        // checked here: the JDK's own refusal of a header value quotes the value
        throw new UserErrorException("the bearer token from " + source + " has a character at position "
            + (i + 1) + " that an HTTP header cannot carry (a token is printable ASCII without spaces)");
      }
    }
  }

  /**
   * The token the read's options give ({@code token} over {@code token_file}), or null: then each
   * JVM sends its {@code THEFLASH_TOKEN}, if set.
   */
  static BearerToken fromOptions(String token, String tokenFile) {
    if (token != null && !token.trim().isEmpty()) {
      return new BearerToken(token.trim(), "option token");
    }
    if (tokenFile == null || tokenFile.trim().isEmpty()) return null;
    String path = tokenFile.trim();
    String source = "option token_file " + path;
    String text;
    try {
      text = new String(Files.readAllBytes(Paths.get(path)), StandardCharsets.UTF_8);
    } catch (IOException | RuntimeException e) {
      throw new UserErrorException("cannot read the token file " + path + " (option token_file): " + e, e);
    }
    String first = text.strip().isEmpty() ? "" : text.strip().split("\\R", 2)[0].strip();
    if (first.isEmpty()) {
      throw new UserErrorException("the token file " + path
          + " (option token_file) is empty: put the bearer token on its first line");
    }
    return new BearerToken(first, source);
  }

  /** The token a session conf ({@code conf}, e.g. theflash.token) holds, or null when it is unset. */
  static BearerToken fromSession(String value, String conf) {
    if (value == null || value.trim().isEmpty()) return null;
    return new BearerToken(value.trim(), "the session conf " + conf);
  }

  /** This JVM's {@code THEFLASH_TOKEN}, or null when it is unset or blank. */
  static BearerToken fromEnvironment() {
    String token = System.getenv(ENVIRONMENT);
    if (token == null || token.trim().isEmpty()) return null;
    return new BearerToken(token.trim(), "the " + ENVIRONMENT + " environment variable");
  }

  /** The Authorization header's value. */
  String header() {
    return "Bearer " + value;
  }

  @Override
  public String toString() {
    return "BearerToken(from " + source + ")";
  }
}
