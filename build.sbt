// Builds jvm-shim/ (the Java DataSource V2 for JVM Spark) where sbt is available.
// Our own machines cannot reach Maven Central, so there the shim is compiled with plain
// javac against pyspark's bundled jars (see jvm-shim/README.md). The shim's sources land
// with its issue; until then this file only names what it will build.
ThisBuild / scalaVersion := "2.13.16"
ThisBuild / organization := "io.theflash"

lazy val shim = (project in file("jvm-shim"))
  .settings(
    name := "theflash-spark-shim",
    version := "0.1.0",
    crossPaths := false,
    autoScalaLibrary := false,
    Compile / javaSource := baseDirectory.value / "src" / "main" / "java",
    libraryDependencies ++= Seq(
      "org.apache.spark" %% "spark-sql" % "4.0.1" % Provided,
      "org.apache.arrow" % "arrow-vector" % "18.1.0" % Provided,
    ),
  )
