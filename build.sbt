// Builds jvm-shim/ (the Java DataSource V2 for JVM Spark) where sbt is available: the same
// sources (jvm-shim/src/main/java, and the DataSourceRegister service file in
// jvm-shim/src/main/resources) that scripts/bootstrap.sh compiles with plain javac against
// pyspark's bundled jars (pyspark_theflash/spark/jar.py), as our own machines cannot reach
// Maven Central. The versions are those of the pinned pyspark wheel (tests/spark/test_jvm_jar.py).
ThisBuild / scalaVersion := "2.13.18"
ThisBuild / organization := "io.theflash"

lazy val shim = (project in file("jvm-shim"))
  .settings(
    name := "theflash-spark-shim",
    version := "0.1.0",
    crossPaths := false,
    autoScalaLibrary := false,
    Compile / javaSource := baseDirectory.value / "src" / "main" / "java",
    Compile / resourceDirectory := baseDirectory.value / "src" / "main" / "resources",
    javacOptions ++= Seq("--release", "17"),
    libraryDependencies ++= Seq(
      "org.apache.spark" %% "spark-sql" % "4.2.1" % Provided,
      "org.apache.arrow" % "arrow-vector" % "19.0.0" % Provided,
    ),
  )
