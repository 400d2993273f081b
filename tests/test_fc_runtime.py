"""Config, context, event decoding and error mapping, built from plain values."""

from __future__ import annotations

import io
import json
import logging

import pytest

from context import FcContext, redact
from errors import ERROR_TYPES, BuildFailed, FcBuildError, InvalidRequest
from fc_runtime import RequestLog, RuntimeConfig, configure_logging, error_response, parse_event

SECRET = "sk-VERY-SECRET-123"
TOKEN = "sts-token-ABCDEFG"


class TestRuntimeConfig:
    def test_port_argument_wins(self):
        env = {"FC_CUSTOM_LISTEN_PORT": "9100", "FC_SERVER_PORT": "9200"}
        assert RuntimeConfig.from_env(env, ["9300"]).port == 9300

    def test_port_from_custom_listen_port_then_server_port_then_default(self):
        assert RuntimeConfig.from_env({"FC_CUSTOM_LISTEN_PORT": "9100", "FC_SERVER_PORT": "9200"}, []).port == 9100
        assert RuntimeConfig.from_env({"FC_SERVER_PORT": "9200"}, []).port == 9200
        assert RuntimeConfig.from_env({}, []).port == 9000

    def test_binds_all_interfaces_by_default(self):
        assert RuntimeConfig.from_env({}, []).host == "0.0.0.0"
        assert RuntimeConfig.from_env({}, ["--host", "127.0.0.1"]).host == "127.0.0.1"

    def test_port_zero_is_allowed(self):
        assert RuntimeConfig.from_env({}, ["0"]).port == 0

    @pytest.mark.parametrize("bad", ["abc", "70000", "-1"])
    def test_bad_port_is_refused(self, bad):
        with pytest.raises(ValueError, match="port"):
            RuntimeConfig.from_env({"FC_CUSTOM_LISTEN_PORT": bad}, [])

    def test_log_settings(self):
        cfg = RuntimeConfig.from_env({"FCBUILD_LOG_LEVEL": "debug", "FCBUILD_LOG_FORMAT": "json"}, [])
        assert (cfg.log_level, cfg.log_format) == ("DEBUG", "json")
        with pytest.raises(ValueError, match="FCBUILD_LOG_FORMAT"):
            RuntimeConfig.from_env({"FCBUILD_LOG_FORMAT": "xml"}, [])

    def test_pipeline_settings_are_read_once_here(self):
        cfg = RuntimeConfig.from_env({"FCBUILD_UPLOAD_CONCURRENCY": "4", "FCBUILD_WORKSPACE_ROOT": "/w"}, [])
        assert cfg.pipeline.upload_concurrency == 4
        assert cfg.pipeline.workspace_root == "/w"
        with pytest.raises(ValueError, match="FCBUILD_UPLOAD_CONCURRENCY"):
            RuntimeConfig.from_env({"FCBUILD_UPLOAD_CONCURRENCY": "many"}, [])


class TestFcContext:
    HEADERS = {
        "X-Fc-Request-Id": "rid-1",
        "x-fc-function-name": "fn",
        "x-fc-function-memory": "1024",
        "x-fc-function-timeout": "120",
        "x-fc-region": "cn-shanghai",
        "x-fc-account-id": "42",
        "x-fc-qualifier": "prod",
        "x-fc-access-key-id": "STS.id",
        "x-fc-access-key-secret": SECRET,
        "x-fc-security-token": TOKEN,
    }

    def test_from_headers(self):
        ctx = FcContext.from_headers(self.HEADERS, {})
        assert ctx.request_id == "rid-1"
        assert (ctx.function_name, ctx.memory_mb, ctx.timeout_s, ctx.region) == ("fn", 1024, 120, "cn-shanghai")
        assert (ctx.account_id, ctx.qualifier) == ("42", "prod")
        assert ctx.credentials.access_key_secret == SECRET
        assert ctx.credentials.security_token == TOKEN

    def test_environment_is_the_fallback(self):
        env = {
            "FC_REGION": "cn-beijing",
            "FC_FUNCTION_NAME": "envfn",
            "ALIBABA_CLOUD_ACCESS_KEY_ID": "envid",
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "envsecret",
            "ALIBABA_CLOUD_SECURITY_TOKEN": "envtoken",
        }
        ctx = FcContext.from_headers({"x-fc-request-id": "r"}, env)
        assert (ctx.region, ctx.function_name) == ("cn-beijing", "envfn")
        assert ctx.credentials.access_key_id == "envid"
        assert ctx.credentials.security_token == "envtoken"

    def test_header_triple_is_never_mixed_with_environment(self):
        env = {"ALIBABA_CLOUD_ACCESS_KEY_ID": "envid", "ALIBABA_CLOUD_SECURITY_TOKEN": "envtoken"}
        headers = {"x-fc-access-key-id": "hid", "x-fc-access-key-secret": "hsecret"}
        ctx = FcContext.from_headers(headers, env)
        assert (ctx.credentials.access_key_id, ctx.credentials.security_token) == ("hid", "")

    def test_missing_headers_are_tolerated(self):
        ctx = FcContext.from_headers({}, {}, default_timeout_s=77)
        assert ctx.request_id.startswith("local-")
        assert ctx.timeout_s == 77 and ctx.credentials is None and ctx.memory_mb == 0

    def test_async_marker(self):
        assert FcContext.from_headers({"x-fc-invocation-type": "Async"}, {}).invocation_type == "Async"

    def test_credentials_never_in_repr(self):
        ctx = FcContext.from_headers(self.HEADERS, {})
        for text in (repr(ctx), str(ctx), repr(ctx.credentials)):
            assert SECRET not in text and TOKEN not in text and "STS.id" not in text


class TestParseEvent:
    def test_object(self):
        assert parse_event(b'{"a": 1}') == {"a": 1}
        assert parse_event('\ufeff{"a": 1}'.encode()) == {"a": 1}

    @pytest.mark.parametrize(
        "body,reason",
        [(b"", "empty"), (b"{", "malformed JSON"), (b"[1]", "an array"), (b'"x"', "a string"), (b"\xff\xfe", "UTF-8")],
    )
    def test_rejects(self, body, reason):
        with pytest.raises(InvalidRequest, match=reason):
            parse_event(body)


class TestErrorResponse:
    def test_pipeline_error(self):
        status, body = error_response(BuildFailed("npm exited 1"), "rid")
        assert status == 404
        assert body == {"errorType": "BuildFailed", "errorMessage": "npm exited 1", "requestId": "rid"}

    def test_unexpected_exception_is_internal(self):
        status, body = error_response(KeyError("x"), "rid")
        assert (status, body["errorType"]) == (404, "Internal")
        assert "KeyError" in body["errorMessage"]

    def test_secrets_are_redacted(self):
        _, body = error_response(RuntimeError(f"boom {SECRET}"), "rid", [SECRET])
        assert SECRET not in json.dumps(body)

    def test_every_error_class_has_a_documented_type(self):
        def walk(cls):
            for sub in cls.__subclasses__():
                yield sub
                yield from walk(sub)

        types = {cls.error_type for cls in walk(FcBuildError)}
        assert types <= set(ERROR_TYPES)
        assert "Internal" in ERROR_TYPES


class TestLogging:
    def _log(self, fmt):
        stream = io.StringIO()
        configure_logging(RuntimeConfig(log_format=fmt), stream)
        return stream

    def test_text_lines_carry_request_id_and_redact(self):
        stream = self._log("text")
        log = RequestLog(logging.getLogger("fcbuild.t"), "rid-7", [SECRET])
        log.info("value %s", SECRET)
        log.marker("FC Invoke Start")
        lines = stream.getvalue().splitlines()
        assert " rid-7 [INFO] value ***" in lines[0]
        assert lines[1] == "FC Invoke Start RequestId: rid-7"

    def test_json_lines(self):
        stream = self._log("json")
        RequestLog(logging.getLogger("fcbuild.t"), "rid-8").warning("hello")
        doc = json.loads(stream.getvalue().splitlines()[0])
        assert (doc["requestId"], doc["level"], doc["message"]) == ("rid-8", "WARNING", "hello")

    def test_oss2_debug_logging_is_capped(self):
        self._log("text")
        configure_logging(RuntimeConfig(log_level="DEBUG"), io.StringIO())
        assert logging.getLogger("oss2").getEffectiveLevel() >= logging.WARNING

    def teardown_method(self):
        logging.getLogger().handlers[:] = []


def test_redact():
    assert redact("a secret b", ("secret",)) == "a *** b"
    assert redact("nothing", ()) == "nothing"
