package io.theflash.spark;

/**
 * No TheFlash API service answers at the address a read was given (option or conf {@code server}):
 * nothing listens there, or it refused the connection. As {@link ServiceException}, an
 * {@link IllegalArgumentException} (PySpark shows its message alone) and a {@code SparkThrowable}
 * with SQLSTATE 08001, the client unable to connect (spark-sql prints its message alone).
 */
public final class ServiceUnreachableException extends UserErrorException {
  ServiceUnreachableException(String message, Throwable cause) {
    super(message, cause);
  }

  @Override
  public String getCondition() {
    return "THEFLASH_SERVICE_UNREACHABLE";
  }

  @Override
  public String getSqlState() {
    return "08001";
  }
}
