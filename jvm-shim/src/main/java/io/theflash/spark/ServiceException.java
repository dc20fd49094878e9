package io.theflash.spark;

/** An error answered by the TheFlash API service: its code (``unknown_table``...), HTTP status and message. */
public final class ServiceException extends RuntimeException {
  public final String code;
  public final int status;

  public ServiceException(String server, String code, int status, String message) {
    super("theflash service " + server + " answered " + status + " " + code + ": " + message);
    this.code = code;
    this.status = status;
  }
}
