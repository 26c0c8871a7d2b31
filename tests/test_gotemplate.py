"""The Go template subset renders Dkron payload templates and names the position of errors."""

import json
import urllib.parse

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dkron_pkg.gotemplate import Template, TemplateError, parse, render

DATA = {
    "JobName": "backup",
    "Success": "false",
    "Output": 'line 1\nsays "hi" & <bye>',
    "Attempt": 2,
    "Empty": "",
    "Nested": {"Inner": "deep"},
}


def test_fields_and_text_render_like_dkron_payloads():
    tpl = '{"job": "{{.JobName}}", "ok": {{.Success}}, "attempt": {{.Attempt}}}'
    assert render(tpl, DATA) == '{"job": "backup", "ok": false, "attempt": 2}'
    assert render("{{.Nested.Inner}}", DATA) == "deep"
    assert render("plain text only", DATA) == "plain text only"


def test_if_else_if_else_follow_go_truth():
    tpl = '{{if .Empty}}A{{else if eq .Success "true"}}B{{else}}C{{end}}'
    assert render(tpl, DATA) == "C"
    assert render(tpl, {**DATA, "Success": "true"}) == "B"
    assert render(tpl, {**DATA, "Empty": "x"}) == "A"
    # Dkron's Success is a string, so a bare {{if .Success}} is true even for "false" (as in Go).
    assert render("{{if .Success}}yes{{end}}", DATA) == "yes"
    assert render("{{if not .Empty}}empty{{end}}", DATA) == "empty"
    assert render("{{if and .JobName .Empty}}x{{else}}y{{end}}", DATA) == "y"
    assert render("{{if or .Empty .JobName}}x{{end}}", DATA) == "x"
    assert render('{{if ne .JobName "other"}}ne{{end}}', DATA) == "ne"
    assert render("{{if eq .Attempt 1 2 3}}listed{{end}}", DATA) == "listed"


def test_trim_markers_remove_surrounding_white_space():
    tpl = "a  \n {{- .JobName -}} \n\t b"
    assert render(tpl, DATA) == "abackupb"
    assert render("a {{.JobName -}} b", DATA) == "a backupb"
    assert render("{{- /* a comment */ -}}", DATA) == ""
    assert render("x {{/* note */}} y", DATA) == "x  y"
    # "{{-3}}" is the number -3, not a trim marker (as in Go).
    assert render("{{-3}}", DATA) == "-3"


def test_nested_if_with_trim_markers_around_else():
    tpl = "{{if .JobName -}}\n  {{if .Empty}}b{{else}}nb{{end}}\n{{- else -}}\n  none\n{{- end}}!"
    assert render(tpl, DATA) == "nb!"
    assert render(tpl, {**DATA, "JobName": ""}) == "none!"


def test_escaping_functions_match_go():
    assert render("{{.Output | html}}", DATA) == ("line 1\nsays &#34;hi&#34; &amp; &lt;bye&gt;")
    assert render("{{js .Output}}", DATA) == (
        'line 1\\u000Asays \\"hi\\" \\u0026 \\u003Cbye\\u003E'
    )
    assert render("{{.Output | urlquery}}", DATA) == urllib.parse.quote_plus(DATA["Output"])
    assert render("{{print .JobName 1 2}}", DATA) == "backup1 2"
    assert render("{{len .JobName}}", DATA) == "6"


def test_json_function_keeps_payloads_valid_json():
    body = render('{"text": {{json .Output}}, "n": {{json .Attempt}}}', DATA)
    assert json.loads(body) == {"text": DATA["Output"], "n": 2}


def test_string_literals_and_parentheses():
    assert render('{{"a\\tb\\u00e9\\x41"}}', {}) == "a\tbéA"
    assert render("{{`raw \\n`}}", {}) == "raw \\n"
    assert render('{{if (eq .JobName "backup")}}yes{{end}}', DATA) == "yes"
    assert render('{{"<b>" | html | len}}', {}) == "9"


@pytest.mark.parametrize(
    ("source", "line", "col", "words"),
    [
        ("{{range .X}}{{end}}", 1, 3, "not supported"),
        ("ok\n  {{with .X}}{{end}}", 2, 5, "not supported"),
        ("{{.JobName", 1, 1, "unclosed action"),
        ("{{if .JobName}}never closed", 1, 28, "missing {{end}}"),
        ("{{end}}", 1, 3, "unexpected {{end}}"),
        ('{{printf "%s" .JobName}}', 1, 3, 'function "printf" not defined'),
        ("{{$x := 1}}", 1, 3, "variables"),
        ("{{.JobName .Output}}", 1, 12, "not a function"),
        ('{{"unterminated}}', 1, 3, "unterminated string"),
        ("{{}}", 1, 1, "empty action"),
        ("{{.A | }}", 1, 6, "missing command"),
        ("{{/* open", 1, 3, "unclosed comment"),
        ("{{1.5}}", 1, 3, "integer"),
    ],
)
def test_unsupported_or_broken_templates_name_the_position(source, line, col, words):
    with pytest.raises(TemplateError) as err:
        parse(source, name="webhook_payload")
    assert (err.value.line, err.value.col) == (line, col)
    assert words in str(err.value)
    assert str(err.value).startswith(f"template webhook_payload:{line}:{col}: ")


def test_missing_field_is_an_error_at_render_and_caught_by_check_fields():
    tpl = Template("hello\n{{.JobNmae}}")
    with pytest.raises(TemplateError, match=r"2:3: can't evaluate field .JobNmae"):
        tpl.render(DATA)
    with pytest.raises(TemplateError, match=r"unknown field .JobNmae"):
        tpl.check_fields({"JobName", "Output"})
    Template("{{if .JobName}}{{.Output}}{{end}}").check_fields({"JobName", "Output"})


def test_wrong_argument_counts_are_errors():
    with pytest.raises(TemplateError, match="wrong number of arguments for eq"):
        render("{{eq .JobName}}", DATA)
    with pytest.raises(TemplateError, match="len of int"):
        render("{{len .Attempt}}", DATA)


_text_without_braces = st.text().filter(lambda s: "{{" not in s)


@given(_text_without_braces)
def test_text_without_actions_renders_to_itself(text):
    assert render(text, {}) == text


@given(st.text())
def test_json_function_round_trips_any_text(value):
    assert json.loads(render("{{json .V}}", {"V": value})) == value


@given(st.text())
def test_html_escaping_leaves_no_markup(value):
    out = render("{{html .V}}", {"V": value})
    assert not any(ch in out for ch in "<>\"'\0")
