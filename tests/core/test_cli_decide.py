"""`tierup decide` and `tierup policy check`: the admin's way to see what a policy does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from integration.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CASES = sorted(EXAMPLES.glob("*/*.json"))


@pytest.mark.parametrize("path", CASES, ids=[f"{p.parent.name}/{p.stem}" for p in CASES])
def test_every_example_decides_as_expected(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    expect = json.loads(path.read_text())["expect"]
    assert main(["decide", "--policy", path.parent.name, str(path)]) == 0
    out = json.loads(capsys.readouterr().out)
    for key, value in expect.items():
        assert out[key] == value, f"{path.name}: {key}"


def test_there_is_an_example_for_each_rule() -> None:
    names = {p.stem.split("-")[0] for p in CASES}
    assert {f"lr{i}" for i in range(1, 9)} <= names
    assert {f"sd{i}" for i in range(1, 12)} <= names
    assert {"sh3", "sh4"} <= names


def test_decide_table_format(capsys: pytest.CaptureFixture[str]) -> None:
    path = EXAMPLES / "lead-review" / "lr5-escalated.json"
    assert main(["decide", "--policy", "lead-review", "--format", "table", str(path)]) == 0
    out = capsys.readouterr().out
    assert "state" in out and "-> escalated" in out
    assert "assign_group: group=Technical Support Team Leaders" in out


def test_decide_is_reproducible(capsys: pytest.CaptureFixture[str]) -> None:
    path = str(EXAMPLES / "service-desk" / "sd10-first-contact-one-hour.json")
    main(["decide", "--policy", "service-desk", path])
    first = capsys.readouterr().out
    main(["decide", "--policy", "service-desk", path])
    assert capsys.readouterr().out == first


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"now": "2026-03-10T10:00:00Z", "reason": "wrong_resolution"}', "requested_by: missing"),
        ('{"now": "yesterday", "requested_by": {"id": "1"}}', "not an ISO 8601 time"),
        ('{"now": "2026-03-10T10:00:00Z", "requested_by": {"id": "1"}, "reason": "bored"}', "reason: unknown value"),
        ('{"now": "2026-03-10T10:00:00Z", "command": "confirm", "ticket_ref": "1"}', "cannot confirm"),
    ],
)
def test_decide_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    f = tmp_path / "in.json"
    f.write_text(content)
    assert main(["decide", str(f)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_policy_check_summarises(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "check", "service-desk"]) == 0
    out = capsys.readouterr().out
    assert "policy service-desk" in out and ": OK" in out
    assert "first contact within 1 business hour" in out
    assert "level 2: Head of Service Delivery" in out
    assert "within SLA, sla_violation is deferred" in out


def test_policy_check_names_who_may_escalate_as_written(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "check", "lead-review"]) == 0
    out = capsys.readouterr().out
    assert "who may escalate: user tags ['authorised_contact', 'club_employee', 'pg_champion']; " in out
    assert "roles ['admin', 'agent', 'lead']" in out and "Role." not in out


def test_policy_check_names_file_key_and_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = (Path(__file__).resolve().parents[2] / "integration/policies/lead-review.toml").read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text(source.replace('on_escalate = "high"', 'on_escalate = "highest"'))
    assert main(["policy", "check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: priority.on_escalate: unknown priority 'highest'" in err
