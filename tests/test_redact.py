"""Secrets never reach the run folder: the redaction rules (pure)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from wsstorm.runfolder.redact import REDACTED, redact_argv, redact_options

secret = st.text(st.characters(codec="utf-8", exclude_characters="\n"), min_size=6).filter(lambda s: s.strip())


@given(secret)
def test_no_secret_survives_a_command_line(tok):
    argv = [
        "locust",
        "--header",
        f"Authorization: Bearer {tok}",
        f"--query=token={tok}",
        "--target-token",
        tok,
        "--ready-send",
        f'{{"auth":"{tok}"}}',
        "--init-payload",
        f"token={tok}",
        "--policy",
        "immediate",
    ]
    out = redact_argv(argv)
    assert out[1:] == [
        "--header",
        f"Authorization:{REDACTED}",
        f"--query=token={REDACTED}",
        "--target-token",
        REDACTED,
        "--ready-send",
        REDACTED,
        "--init-payload",
        f"token={REDACTED}",
        "--policy",
        "immediate",
    ]


def test_manifest_options_keep_names_not_values():
    opts = {
        "header": ["Authorization: Bearer s3cr3t", "X-Trace: 1"],
        "query": "k=v",
        "target_token": "t0k",
        "ready_send": "hello s3cr3t",
        "policy": "immediate",
    }
    out = redact_options(opts)
    assert out == {
        "header": [f"Authorization:{REDACTED}", f"X-Trace:{REDACTED}"],
        "query": [f"k={REDACTED}"],
        "ready_send": REDACTED,
        "policy": "immediate",
    }
