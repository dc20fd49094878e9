"""The Delta log's conditional PUT is signed by TheFlash itself (``lake.sigv4``); the signer is
checked against AWS's published vectors, not against a server (SeaweedFS, the test server,
could be lenient about what it accepts):

* the Signature Version 4 test suite's ``get-vanilla`` (AWS's ``aws-sig-v4-test-suite``, also
  in ``awslabs/aws-crt-python``'s tests): a generic service, two signed headers;
* the S3 API guide's worked examples ("Signature Calculations for the Authorization Header:
  Transferring Payload in a Single Chunk", docs.aws.amazon.com/AmazonS3/latest/API/
  sig-v4-header-based-auth.html): "GET Object" (a Range header, the empty payload's hash) and
  "PUT Object" (a key with ``$``, URI-encoded once as S3 wants, a signed payload, a Date header
  and ``x-amz-storage-class``).
"""
from __future__ import annotations

from pathlib import Path

import pytest

from pyspark_theflash.lake.sigv4 import (EMPTY_SHA256, Credentials, authorization, canonical_request,
                                         signed_headers, uri_encode)

SUITE = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
S3_GUIDE = Credentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")


def test_the_signature_v4_test_suite_s_get_vanilla() -> None:
    headers = {"Host": "example.amazonaws.com", "X-Amz-Date": "20150830T123600Z"}
    request, signed = canonical_request("GET", "/", (), headers, EMPTY_SHA256)
    assert request == ("GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n"
                       "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    assert authorization(SUITE, "20150830T123600Z", "us-east-1", "service", "GET", "/", (), headers, EMPTY_SHA256) == (
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
        "SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31")


def test_the_s3_guide_s_put_object_example() -> None:
    path = "/" + uri_encode("test$file.text", keep_slash=True)
    assert path == "/test%24file.text"
    sent = signed_headers(S3_GUIDE, "20130524T000000Z", "us-east-1", "PUT", "examplebucket.s3.amazonaws.com", path,
                          {"Date": "Fri, 24 May 2013 00:00:00 GMT", "x-amz-storage-class": "REDUCED_REDUNDANCY"},
                          b"Welcome to Amazon S3.")
    assert sent["x-amz-content-sha256"] == "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072"
    assert sent["Authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
        "SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class, "
        "Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd")


def test_the_s3_guide_s_get_object_example() -> None:
    sent = signed_headers(S3_GUIDE, "20130524T000000Z", "us-east-1", "GET", "examplebucket.s3.amazonaws.com",
                          "/test.txt", {"Range": "bytes=0-9"}, b"")
    assert sent["Authorization"].endswith(
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")


def test_a_conditional_put_signs_if_none_match_and_a_session_token() -> None:
    temporary = Credentials("AKID", "s3cr3t-value", "token/with+chars")
    sent = signed_headers(temporary, "20240820T000000Z", "eu-west-1", "PUT", "127.0.0.1:8333",
                          "/bucket/" + uri_encode("tables/7/_delta_log/00000000000000000003.json", True),
                          {"If-None-Match": "*"}, b"{}\n")
    assert sent["x-amz-security-token"] == "token/with+chars"
    assert "SignedHeaders=host;if-none-match;x-amz-content-sha256;x-amz-date;x-amz-security-token," in sent["Authorization"]
    assert "/20240820/eu-west-1/s3/aws4_request" in sent["Authorization"]
    assert "s3cr3t" not in repr(temporary) and "token/with" not in repr(temporary)


def test_paths_and_queries_are_encoded_as_s3_wants() -> None:
    assert uri_encode("p1/stable-é x+y~.parquet", keep_slash=True) == "p1/stable-%C3%A9%20x%2By~.parquet"
    assert uri_encode("a/b", keep_slash=False) == "a%2Fb"
    request, _ = canonical_request("GET", "/", [("prefix", "J"), ("max-keys", "2")], {"host": "h"}, EMPTY_SHA256)
    assert request.split("\n")[2] == "max-keys=2&prefix=J"


def test_credentials_come_from_the_environment_then_the_profile_and_a_damaged_file_is_named(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pyspark_theflash.lake.errors import LakeLocationError
    from pyspark_theflash.lake.s3_put import credentials

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    shared = tmp_path / "credentials"
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(shared))
    shared.write_text("[lake]\naws_access_key_id = AK\naws_secret_access_key = SK\n")
    monkeypatch.setenv("AWS_PROFILE", "lake")
    got = credentials()
    assert (got.access_key, got.secret_key, got.session_token) == ("AK", "SK", None)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "ENV")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "ENVSECRET")
    assert credentials().access_key == "ENV"  # the environment first
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    shared.write_text("aws_access_key_id = no section header\n")
    with pytest.raises(LakeLocationError, match="credentials file does not parse") as damaged:
        credentials()
    assert str(shared) in str(damaged.value) and "\n" not in str(damaged.value)
    shared.write_text("[other]\naws_access_key_id = AK\naws_secret_access_key = SK\n")
    with pytest.raises(LakeLocationError, match=r"found no credentials.*profile \[lake\]"):
        credentials()
