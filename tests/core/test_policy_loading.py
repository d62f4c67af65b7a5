"""A malformed policy fails at load, naming the file, the key and what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from integration.policy import SHIPPED, PolicyError, load_policy

SOURCE = (Path(__file__).resolve().parents[2] / "integration/policies/service-desk.toml").read_text()


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_policies_load(name: str) -> None:
    policy = load_policy(name)
    assert policy.name == name
    assert policy.default_group in policy.all_groups()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('ceiling = "high"', 'ceiling = "highest"', "reclassify.ceiling: unknown priority 'highest'"),
        ('within = "1 business hour"', 'within = "soon"', "first_contact.within:"),
        ('escalate = ["sla_violation"', 'escalate = ["sla_breach"', "reasons.escalate: unknown value 'sla_breach'"),
        ('timezone = "Europe/London"', 'timezone = "Europe/Atlantis"', "calendars.default"),
        ('hours = "08:30-17:30"', 'hours = "half past eight"', "calendars.default.hours: must look like"),
        ("[sla_gate]", "[sla_gates]", "sla_gates: unknown key"),
        ("level_up = true", 'level_up = "yes"', "second_request.level_up: must be true or false"),
        ('2 = "Head of Service Delivery"', '3 = "Head of Service Delivery"', "levels: levels must be numbered 2, 3"),
        ("{{ sla.name }}", "{{ sla.name", "templates.deferred_reply: template error"),
        ("{{ sla.name }}", "{{ no_such_thing }}", "templates.deferred_reply: template error"),
        ('name = "service-desk"', "name = 3", "name: must be a non-empty string"),
        ("[routing]", "[routing]\nbogus = 1", "routing.bogus: unknown key"),
    ],
)
def test_malformed_policy_names_file_key_problem(tmp_path: Path, old: str, new: str, message: str) -> None:
    assert old in SOURCE
    path = write(tmp_path, SOURCE.replace(old, new, 1))
    with pytest.raises(PolicyError) as err:
        load_policy(path)
    assert str(err.value).startswith(f"{path}: ")
    assert message in str(err.value)


def test_not_toml(tmp_path: Path) -> None:
    path = write(tmp_path, "name = ")
    with pytest.raises(PolicyError, match="not valid TOML"):
        load_policy(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(tmp_path / "nope.toml")


def test_template_sandbox_refuses_unsafe_access(tmp_path: Path) -> None:
    path = write(tmp_path, SOURCE.replace("{{ sla.name }}", "{{ sla.__class__.__mro__ }}", 1))
    with pytest.raises(PolicyError, match=r"templates\.deferred_reply"):
        load_policy(path)


@pytest.mark.parametrize("name", SHIPPED)
def test_templates_render_exactly_as_jinja_renders_them(name: str) -> None:
    # Policy.render builds its context in one step instead of through Template.new_context.
    from integration.model import Person
    from integration.policy import _sample_context

    policy = load_policy(name)
    context = {**_sample_context(), "rationale": 'Front desk <b>down</b> & "everyone" waits',
               "requester": Person(id="501", name="<i>Pat</i>", email="pat@club.example")}  # fmt: skip
    for template_name, template in policy.templates.items():
        expected = template.render(**context, policy_name=policy.name).strip()
        assert policy.render(template_name, **dict(context)) == expected, template_name
    assert "&lt;b&gt;down&lt;/b&gt; &amp; &#34;everyone&#34;" in policy.render("escalated_note", **dict(context))
