"""mkdocs hook: the reference parts of the docs, made from the code at build time.

- `<!-- generated:settings -->` in configuration.md: every field of `qa.config.Settings`, by
  `SETTING_GROUPS`, with its environment variable, option, default, limits and description.
- `<!-- generated:http-api -->` in http-api.md: every route of the app's OpenAPI schema, with
  parameters, request and response schemas, status codes and a `curl` example built from the
  schema's own examples; the site also gets the schema itself as `openapi.json`.

Nothing here is written by hand, so neither page can drift from the code.
"""

from __future__ import annotations

import json
import shlex
from typing import Any

BASE = "http://127.0.0.1:8000"
_SCHEMA: dict[str, Any] = {}


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if "<!-- generated:settings -->" in markdown:
        markdown = markdown.replace("<!-- generated:settings -->", settings_markdown())
    if "<!-- generated:http-api -->" in markdown:
        markdown = markdown.replace("<!-- generated:http-api -->", api_markdown(openapi()))
    return markdown


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    text = json.dumps(openapi(), indent=2, ensure_ascii=False) + "\n"
    files.append(File.generated(config, "openapi.json", content=text))
    return files


# -- settings ----------------------------------------------------------------------------------


def settings_markdown() -> str:
    from qa.cli import SHOWN, shown_default, value_hint
    from qa.config import SETTING_GROUPS, Settings

    fields = Settings.model_fields
    commands: dict[str, list[str]] = {}
    for command, names in SHOWN.items():
        for name in names:
            commands.setdefault(name, []).append(f"`qa {command}`")
    grouped = {n for names in SETTING_GROUPS.values() for n in names}
    groups = {**SETTING_GROUPS, "other": tuple(n for n in fields if n not in grouped)}
    out: list[str] = []
    for group, names in groups.items():
        names = tuple(n for n in names if n in fields)
        if not names:
            continue
        out += [f"### {group[:1].upper()}{group[1:]}", ""]
        out += ["| setting | default | what |", "| --- | --- | --- |"]
        for name in names:
            field = fields[name]
            option = "--" + name.replace("_", "-")
            spelled = f"`{name}`<br>`QA_{name.upper()}`<br>`{option} {value_hint(name)}`"
            what = _cell(field.description or "")
            limits = _limits(field.metadata)
            if limits:
                what += f" ({limits})"
            if name in commands:
                what += f"<br>Listed by {', '.join(commands[name])} `--help`."
            out.append(f"| {spelled} | `{shown_default(name)}` | {what} |")
        out.append("")
    return "\n".join(out)


def _limits(metadata: list[Any]) -> str:
    words = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<"}
    parts = []
    for item in metadata:
        for attr, sign in words.items():
            value = getattr(item, attr, None)
            if value is not None:
                parts.append(f"{sign} {value}")
    return ", ".join(parts)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


# -- HTTP API ----------------------------------------------------------------------------------


def openapi() -> dict[str, Any]:
    """The schema of the app `qa serve` runs, with default settings and no index."""
    if not _SCHEMA:
        from qa.config import load_settings
        from qa.server.app import create_app

        _SCHEMA.update(create_app(load_settings(_env_file=None)).openapi())
    return _SCHEMA


def api_markdown(spec: dict[str, Any]) -> str:
    schemas: dict[str, Any] = spec["components"]["schemas"]
    out = ["| route | what |", "| --- | --- |"]
    routes = [(p, m, op) for p, ops in spec["paths"].items() for m, op in ops.items()]
    for path, method, op in routes:
        title = f"{method.upper()} {path}"
        out.append(f"| [`{title}`](#{_anchor(title)}) | {_cell(op.get('description', ''))} |")
    out.append("")
    used: list[str] = []
    for path, method, op in routes:
        out += _route(path, method, op, schemas, used)
    out += ["## Schemas", ""]
    seen: set[str] = set()
    while used:
        name = used.pop(0)
        if name in seen or name not in schemas:
            continue
        seen.add(name)
        out += _schema_section(name, schemas[name], used)
    return "\n".join(out)


def _anchor(title: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in title.lower()).strip("-")


def _route(
    path: str, method: str, op: dict[str, Any], schemas: dict[str, Any], used: list[str]
) -> list[str]:
    title = f"{method.upper()} {path}"
    out = [f"### {title} {{#{_anchor(title)}}}", "", op.get("description", ""), ""]
    params = op.get("parameters", [])
    if params:
        out += ["| parameter | in | type | what |", "| --- | --- | --- | --- |"]
        for p in params:
            required = " (required)" if p.get("required") else ""
            kind = _type(p.get("schema", {}), used)
            what = _cell(p.get("description", ""))
            if "default" in p.get("schema", {}):
                what += f" Default: `{json.dumps(p['schema']['default'])}`."
            out.append(f"| `{p['name']}` | {p['in']}{required} | {kind} | {what} |")
        out.append("")
    body = op.get("requestBody", {}).get("content", {})
    for media, content in body.items():
        out += [f"Request body (`{media}`): {_type(content.get('schema', {}), used)}", ""]
    out += ["| status | response |", "| --- | --- |"]
    for code, response in op.get("responses", {}).items():
        kinds = [
            f"{_type(c['schema'], used)} (`{media}`)" if "schema" in c else f"`{media}`"
            for media, c in response.get("content", {}).items()
        ]
        what = _cell(response.get("description", "")).rstrip(".")
        out.append(f"| {code} | {what}{': ' + ', '.join(kinds) if kinds else ''} |")
    out += ["", "```bash", _curl(path, method, op, schemas), "```", ""]
    example = _response_example(op, schemas)
    if example is not None:
        text = json.dumps(example, indent=2, ensure_ascii=False)
        out += ["Response, for example:", "", "```json", text, "```", ""]
    return out


def _curl(path: str, method: str, op: dict[str, Any], schemas: dict[str, Any]) -> str:
    words = ["curl", "-N"] if path.endswith("/stream") else ["curl"]
    if method != "get":
        words += ["-X", method.upper()]
    url = BASE + path.replace("{doc_id}", "policy.txt").replace("{job_id}", "3-5f0c9e2a7b1d")
    url = url.replace("{feedback_id}", "7")
    query = [p for p in op.get("parameters", []) if p["in"] == "query" and p.get("required")]
    if path == "/search":
        query_text = "q=When+were+the+regulations+issued%3F&k=3"
    else:
        query_text = "&".join(f"{p['name']}=..." for p in query)
    if query_text:
        url += "?" + query_text
    words.append(url)
    content = op.get("requestBody", {}).get("content", {})
    if "application/json" in content:
        example = _example(content["application/json"].get("schema", {}), schemas)
        words += ["-H", "Content-Type: application/json", "-d", json.dumps(example or {})]
    if "multipart/form-data" in content:
        words += ["-F", "files=@paper.pdf", "-F", "files=@notes.md"]
    return " ".join(shlex.quote(w) if i else w for i, w in enumerate(words))


def _example(schema: dict[str, Any], schemas: dict[str, Any]) -> Any:
    ref = schema.get("$ref", "")
    target = schemas.get(ref.rsplit("/", 1)[-1], {}) if ref else schema
    examples = target.get("examples")
    return examples[0] if examples else None


def _response_example(op: dict[str, Any], schemas: dict[str, Any]) -> Any:
    for code, response in op.get("responses", {}).items():
        if code.startswith("2"):
            schema = response.get("content", {}).get("application/json", {}).get("schema", {})
            return _example(schema, schemas)
    return None


def _type(schema: dict[str, Any], used: list[str]) -> str:
    """A schema as a short type: `string`, `integer ≥ 1`, [AskIn](#askin), `array of ...`."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        used.append(name)
        return f"[{name}](#{_anchor(name)})"
    for key in ("anyOf", "oneOf"):
        if key in schema:
            kinds = [_type(s, used) for s in schema[key] if s.get("type") != "null"]
            nullable = any(s.get("type") == "null" for s in schema[key])
            return " or ".join(kinds) + (" or null" if nullable else "")
    if "const" in schema:
        return f"`{json.dumps(schema['const'])}`"
    if "enum" in schema:
        return " \\| ".join(f"`{json.dumps(v)}`" for v in schema["enum"])
    kind = schema.get("type", "any")
    if kind == "array":
        return f"array of {_type(schema.get('items', {}), used)}"
    if kind == "object" and "additionalProperties" in schema:
        extra = schema["additionalProperties"]
        return f"object of {_type(extra, used)}" if isinstance(extra, dict) else "object"
    limits = [
        f"{sign} {_number(schema[key])}"
        for key, sign in (
            ("minimum", "≥"), ("maximum", "≤"), ("minLength", "length ≥"), ("maxLength", "length ≤")
        )
        if key in schema
    ]  # fmt: skip
    return f"`{kind}`" + (f" ({', '.join(limits)})" if limits else "")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _schema_section(name: str, schema: dict[str, Any], used: list[str]) -> list[str]:
    out = [f"### {name} {{#{_anchor(name)}}}", ""]
    if schema.get("description"):
        out += [_cell(schema["description"]), ""]
    props = schema.get("properties", {})
    required = set(schema.get("required", ()))
    if props:
        out += ["| field | type | what |", "| --- | --- | --- |"]
        for field, spec in props.items():
            mark = "" if field in required else " (optional)"
            default = f" Default: `{json.dumps(spec['default'])}`." if "default" in spec else ""
            what = _cell(spec.get("description", "")) + default
            out.append(f"| `{field}`{mark} | {_type(spec, used)} | {what.strip()} |")
        out.append("")
    elif "enum" in schema or "type" in schema:
        out += [f"{_type(schema, used)}", ""]
    return out
