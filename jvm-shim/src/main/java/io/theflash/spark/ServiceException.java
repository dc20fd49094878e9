package io.theflash.spark;

/**
 * An error answered by the TheFlash API service: its code (``unknown_table``...), HTTP status and message.
 * An {@link IllegalArgumentException}, the kind PySpark shows as its message alone (not a
 * {@code Py4JJavaError} with the JVM's stack): the service's message already says what failed
 * and what to do.
 */
public final class ServiceException extends IllegalArgumentException {
  public final String code;
  public final int status;

  public ServiceException(String server, String code, int status, String message) {
    super("theflash service " + server + " answered " + status + " " + code + ": " + message);
    this.code = code;
    this.status = status;
  }
}
