package io.theflash.spark;

/**
 * An error answered by the TheFlash API service: its code ({@code unknown_table}...), HTTP status
 * and message. The message comes first, as the service wrote it (what failed and what to do),
 * then which service answered and how: "MESSAGE (theflash service URL: 404 store_not_found)".
 *
 * <p>An {@link IllegalArgumentException}, the kind PySpark shows as its message alone (not a
 * {@code Py4JJavaError} with the JVM's stack), and a {@code SparkThrowable} with a SQLSTATE that is
 * not an internal error's ({@code XX...}), which spark-sql prints as its message alone (for any
 * other exception it prints the stack, and its driver logs an ERROR with the stack as well).
 */
public final class ServiceException extends UserErrorException {
  public final String code;
  public final int status;
  /** The service's message as it wrote it, without the service and status this one adds. */
  public final String serviceMessage;

  public ServiceException(String server, String code, int status, String message) {
    super(message + " (theflash service " + server + ": " + status + " " + code + ")");
    this.code = code;
    this.status = status;
    this.serviceMessage = message;
  }

  /** THEFLASH_SERVICE_ and the service's code in capitals: THEFLASH_SERVICE_UNKNOWN_TABLE. */
  @Override
  public String getCondition() {
    return "THEFLASH_SERVICE_" + code.toUpperCase(java.util.Locale.ROOT).replaceAll("[^A-Z0-9]", "_");
  }

  /**
   * The SQLSTATE of the answer's kind: 28000 a token refused, 42P01 a table the store lacks, 42704
   * another object it lacks (store, session), 22023 any other request refused, 58000 the service
   * failing. None is an internal error's (XX...): the message is the whole story.
   */
  @Override
  public String getSqlState() {
    if (status == 401 || status == 403) return "28000";
    if ("unknown_table".equals(code)) return "42P01";
    if (status == 404 || status == 410) return "42704";
    if (status / 100 == 4) return "22023";
    return "58000";
  }
}
