"""Load, validate and dump slice policies.

Validation reports every problem at once, each with the file, the line and
the field (``policies/x.yaml:14: slices[2].guaranteed.dl: ...``). Two passes:
pydantic checks each field's type, unit and range and rejects unknown keys;
then cross-field rules run on the typed result (duplicate names and
S-NSSAIs, unknown slices on links, guarantees over capacity, overlapping
match rules, at most one default slice).
"""

from __future__ import annotations

import difflib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import BaseModel, ValidationError

from sliceai.policy.model import DIRECTIONS, Link, Policy, Slice
from sliceai.policy.units import format_rate

FieldPath = tuple[str | int, ...]


@dataclass(frozen=True)
class PolicyIssue:
    """One problem found in a policy file."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return (
            f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        )


class PolicyError(Exception):
    """The one error type for any policy that cannot be loaded; ``issues`` lists them all."""

    def __init__(self, issues: Sequence[PolicyIssue]):
        self.issues = tuple(issues)
        super().__init__("\n".join(str(i) for i in self.issues))


def format_field(path: Iterable[str | int]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# --- YAML with positions -------------------------------------------------------------


class _Positions:
    """Maps a field path to the 1-based line where it appears in the file."""

    def __init__(self) -> None:
        self.lines: dict[FieldPath, int] = {}
        self.nodes = 0  # converted so far, against MAX_POLICY_NODES

    def line(self, path: FieldPath) -> int | None:
        while True:
            if path in self.lines:
                return self.lines[path]
            if not path:
                return None
            path = path[:-1]


def _to_python(
    node: yaml.Node, path: FieldPath, pos: _Positions, issues: list[tuple[FieldPath, str]]
) -> Any:
    pos.lines.setdefault(path, node.start_mark.line + 1)
    pos.nodes += 1
    if pos.nodes > MAX_POLICY_NODES:
        raise _TooManyNodes(node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _scalar(key_node, path, issues)
            if not isinstance(key, str | int):
                issues.append((path, f"mapping key {key!r} is not a name"))
                continue
            child = (*path, key)
            pos.lines[child] = key_node.start_mark.line + 1
            if key in out:
                issues.append((child, "key appears twice"))
            out[key] = _to_python(value_node, child, pos, issues)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_to_python(n, (*path, i), pos, issues) for i, n in enumerate(node.value)]
    return _scalar(node, path, issues)


# libyaml's C parser when PyYAML was built with it (10x faster); marks are the same.
_YAML_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_CONSTRUCTOR = yaml.SafeLoader("")

#: Largest policy text read (UTF-8 bytes): about 4,000 slices.
MAX_POLICY_BYTES = 1 << 20
#: Most YAML nodes (scalars, lists, mappings) in one policy: about 5,000 slices.
MAX_POLICY_NODES = 250_000


class _TooManyNodes(Exception):
    def __init__(self, line: int) -> None:
        super().__init__(line)
        self.line = line


def _too_many_nodes(source: str, line: int | None) -> PolicyIssue:
    return PolicyIssue(
        source, line, "", f"policy has over {MAX_POLICY_NODES} YAML values; too large to read"
    )


def _budget_issue(text: str, source: str) -> PolicyIssue | None:
    """The first reason to refuse ``text`` before building it: over
    :data:`MAX_POLICY_BYTES`, over :data:`MAX_POLICY_NODES`, or an alias (``*name``).

    Aliases are refused outright: a few hundred bytes of nested aliases expand to
    gigabytes (the "billion laughs"), and a policy never needs them. The check reads the
    parser's events, which hold no document, so a hostile text costs its own size only.
    Syntax errors are left to the composer, which reports them with their line.
    """
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_POLICY_BYTES:
        return PolicyIssue(
            source, None, "", f"policy is {size} bytes; at most {MAX_POLICY_BYTES} are read"
        )
    nodes = 0
    try:
        for event in yaml.parse(text, Loader=_YAML_LOADER):
            if isinstance(event, yaml.AliasEvent):
                return PolicyIssue(
                    source,
                    _line(event.start_mark),
                    "",
                    f"YAML alias '*{event.anchor}' is not allowed in a policy "
                    "(aliases can expand a small file into a huge one); write the value out",
                )
            if isinstance(event, yaml.NodeEvent):
                nodes += 1
                if nodes > MAX_POLICY_NODES:
                    return _too_many_nodes(source, _line(event.start_mark))
    except yaml.YAMLError:
        return None
    return None


def _line(mark: Any) -> int | None:
    return None if mark is None else int(mark.line) + 1


def _scalar(node: yaml.Node, path: FieldPath, issues: list[tuple[FieldPath, str]]) -> Any:
    if not isinstance(node, yaml.ScalarNode):
        return repr(node)
    try:
        return _CONSTRUCTOR.construct_object(node, deep=True)
    except yaml.YAMLError as exc:  # an unknown tag such as "!0", a bad timestamp...
        problem = getattr(exc, "problem", None) or str(exc)
        issues.append((path, f"cannot read value: {problem}"))
        return None


# --- loading -----------------------------------------------------------------------------


def load_policy(path: str | Path) -> Policy:
    """Read and validate a policy file; raise :class:`PolicyError` on any problem."""
    name = str(path)
    try:
        size = Path(path).stat().st_size
        if size > MAX_POLICY_BYTES:
            raise PolicyError(
                [PolicyIssue(name, None, "", f"file is {size} bytes; at most {MAX_POLICY_BYTES}")]
            )
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise PolicyError([PolicyIssue(name, None, "", f"cannot read file: {reason}")]) from None
    return loads_policy(text, name)


def loads_policy(text: str, source: str = "<string>") -> Policy:
    """Validate policy YAML given as text; ``source`` names it in messages. Texts over
    :data:`MAX_POLICY_BYTES` or :data:`MAX_POLICY_NODES`, and YAML aliases, are refused.

    Only a text with an anchor (``&``, in a value or not) can hold an alias, so only such
    a text has its parser events read first (:func:`_budget_issue`); any other is
    composed at once and its values counted as they are converted."""
    size = len(text.encode("utf-8", "surrogatepass"))
    refused = _budget_issue(text, source) if "&" in text or size > MAX_POLICY_BYTES else None
    if refused is not None:
        raise PolicyError([refused])
    try:
        node = yaml.compose(text, Loader=_YAML_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = None if mark is None else mark.line + 1
        problem = getattr(exc, "problem", None) or str(exc)
        raise PolicyError(
            [PolicyIssue(source, line, "", f"YAML syntax error: {problem}")]
        ) from None
    if node is None:
        raise PolicyError([PolicyIssue(source, None, "", "file is empty; expected a policy")])
    pos = _Positions()
    structural: list[tuple[FieldPath, str]] = []
    try:
        data = _to_python(node, (), pos, structural)
    except _TooManyNodes as exc:
        raise PolicyError([_too_many_nodes(source, exc.line)]) from None
    issues = [PolicyIssue(source, pos.line(p), format_field(p), m) for p, m in structural]
    if not isinstance(data, dict):
        issues.append(
            PolicyIssue(source, 1, "", "expected a mapping with 'name', 'slices', 'topology'")
        )
        raise PolicyError(issues)
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        issues += _pydantic_issues(exc, source, pos)
        raise PolicyError(issues) from None
    issues += [PolicyIssue(source, pos.line(p), format_field(p), m) for p, m in cross_check(policy)]
    if issues:
        raise PolicyError(issues)
    return policy


def _pydantic_issues(exc: ValidationError, source: str, pos: _Positions) -> list[PolicyIssue]:
    out: list[PolicyIssue] = []
    errors = exc.errors(include_url=False)
    failed = {tuple(e["loc"]) for e in errors if e["type"] != "too_short"}
    for err in errors:
        if err["type"] == "too_short" and any(
            f[: len(err["loc"])] == tuple(err["loc"]) for f in failed
        ):
            continue  # "at least 1 item" only because its items failed: noise

        loc = tuple(p for p in err["loc"] if not _is_union_tag(p))
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = _unknown_key_message(loc, pos)
        elif err["type"] == "missing":
            msg = "required field is missing"
        out.append(PolicyIssue(source, pos.line(loc), format_field(loc), msg))
    return out


def _is_union_tag(part: object) -> bool:
    # pydantic puts the union member or validator name into loc for unions and
    # "function-before[...]" wrappers; they mean nothing to the policy author.
    return isinstance(part, str) and (
        "[" in part or part in ("str", "int", "IPv4Network", "IPv6Network")
    )


def _unknown_key_message(loc: FieldPath, pos: _Positions) -> str:
    key = str(loc[-1])
    siblings = _known_fields(loc[:-1])
    close = difflib.get_close_matches(key, siblings, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"unknown key '{key}'{hint}"


def _known_fields(parent: FieldPath) -> list[str]:
    model_cls: type[BaseModel] = Policy
    for part in parent:
        if isinstance(part, int):
            continue
        field = model_cls.model_fields.get(str(part))
        if field is None:
            return []
        sub = _model_in(field.annotation)
        if sub is None:
            return []
        model_cls = sub
    return list(model_cls.model_fields)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model in a field's annotation (``Link``, ``list[Link]``, ``Slice | None``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def cross_check(policy: Policy) -> list[tuple[FieldPath, str]]:
    """Rules that span fields; returns (field path, message) pairs, empty when valid."""
    problems: list[tuple[FieldPath, str]] = []
    problems += _duplicates(
        [s.name for s in policy.slices], "slices", "name", "slice name '{}' is used twice"
    )
    problems += _duplicates(
        [str(s.snssai) for s in policy.slices],
        "slices",
        "snssai",
        "S-NSSAI {} is used by two slices",
    )
    problems += _duplicates(
        [link.name for link in policy.topology.links],
        ("topology", "links"),
        "name",
        "link name '{}' is used twice",
    )
    known = set(policy.slice_names)
    crossing: Counter[str] = Counter()
    for li, link in enumerate(policy.topology.links):
        for si, sname in enumerate(link.slices):
            if sname not in known:
                problems.append(
                    (
                        ("topology", "links", li, "slices", si),
                        f"unknown slice '{sname}'{_hint(sname, known)}",
                    )
                )
            crossing[sname] += 1
        problems += _capacity(policy, li, link)
    for i, s in enumerate(policy.slices):
        if crossing[s.name] == 0:
            problems.append(
                (("slices", i, "name"), f"slice '{s.name}' crosses no link in topology.links")
            )
    defaults = [i for i, s in enumerate(policy.slices) if s.default]
    for i in defaults[1:]:
        problems.append((("slices", i, "default"), "only one slice may be the default slice"))
    problems += _overlaps(policy.slices)
    return problems


def _hint(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


def _duplicates(
    values: list[str], prefix: str | tuple[str, ...], field: str, template: str
) -> list[tuple[FieldPath, str]]:
    base: FieldPath = (prefix,) if isinstance(prefix, str) else prefix
    seen: dict[str, int] = {}
    out: list[tuple[FieldPath, str]] = []
    for i, v in enumerate(values):
        if v in seen:
            out.append(
                (
                    (*base, i, field),
                    template.format(v) + f" (first at {format_field((*base, seen[v]))})",
                )
            )
        else:
            seen[v] = i
    return out


def _capacity(policy: Policy, li: int, link: Link) -> list[tuple[FieldPath, str]]:
    index = {s.name: s for s in policy.slices}
    out: list[tuple[FieldPath, str]] = []
    for d in DIRECTIONS:
        total = sum(index[n].guaranteed_bps(d) for n in link.slices if n in index)
        if total > link.capacity:
            out.append(
                (
                    ("topology", "links", li, "capacity"),
                    f"guaranteed {d.value.upper()} throughput of its slices sums to "
                    f"{format_rate(total)}, above the link capacity {format_rate(link.capacity)}",
                )
            )
    return out


def _overlaps(slices: Sequence[Slice]) -> list[tuple[FieldPath, str]]:
    """Pairs of match rules of different slices that some packet could satisfy both.

    Comparing every pair is quadratic (half a million pairs at 1,000 slices), so
    candidates come from a sweep over port ranges; rules without ports (or
    without a protocol) are compared with everything.
    """
    rules = [(si, ri, r) for si, s in enumerate(slices) for ri, r in enumerate(s.match)]
    candidates: set[tuple[int, int]] = set()
    wide = [k for k, (_, _, r) in enumerate(rules) if not r.ports or r.protocol is None]
    for k in wide:
        candidates.update((min(k, j), max(k, j)) for j in range(len(rules)) if j != k)
    spans = sorted(
        (pr.first, pr.last, k)
        for k, (_, _, r) in enumerate(rules)
        if r.ports and r.protocol is not None
        for pr in r.ports
    )
    active: list[tuple[int, int]] = []  # (last port, rule index) of spans still open
    for first, last, k in spans:
        active = [(end, j) for end, j in active if end >= first]
        candidates.update((min(k, j), max(k, j)) for _, j in active if j != k)
        active.append((last, k))
    found: dict[tuple[int, int], tuple[FieldPath, str]] = {}
    for a, b in sorted(candidates):
        (si, ri, ra), (sj, rj, rb) = rules[a], rules[b]
        if si == sj or (si, sj) in found or not ra.overlaps(rb):
            continue
        found[(si, sj)] = (
            ("slices", sj, "match", rj),
            f"overlaps slices[{si}].match[{ri}] of slice '{slices[si].name}': "
            "a packet could match both",
        )
    return [found[k] for k in sorted(found)]


# --- dumping ----------------------------------------------------------------------------------


def dump_policy(policy: Policy) -> str:
    """The policy as YAML that :func:`loads_policy` reads back to an equal policy."""
    data = policy.model_dump(mode="json", exclude_defaults=True)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
