package io.theflash.spark;

import org.apache.spark.SparkThrowable;

/**
 * A read, option or catalog setting the connector refuses, with a message that says what was
 * wrong and what to do. An {@link IllegalArgumentException}, which PySpark shows as its message
 * alone (not a {@code Py4JJavaError} with the JVM's stack), and a {@link SparkThrowable} whose
 * SQLSTATE is not an internal error's ({@code XX...}): spark-sql prints its message alone, and its
 * driver logs the stack at debug level only (for any other exception it prints the stack and logs
 * an ERROR with it). Condition THEFLASH_INVALID_REQUEST, SQLSTATE 22023 (invalid parameter value)
 * unless a subclass names its own.
 */
public class UserErrorException extends IllegalArgumentException implements SparkThrowable {
  public UserErrorException(String message) {
    super(message);
  }

  public UserErrorException(String message, Throwable cause) {
    super(message, cause);
  }

  @Override
  public String getCondition() {
    return "THEFLASH_INVALID_REQUEST";
  }

  @Override
  public String getSqlState() {
    return "22023";
  }
}
