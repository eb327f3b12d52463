"""YAML documents that remember where each field came from (for errors naming file:line)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from podnet.errors import PodnetError


class Mapping(dict):
    """A dict that knows the line of itself and of each of its keys (1-based)."""

    line: int = 0
    key_lines: dict[str, int]


class Sequence(list):
    line: int = 0


class _Loader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> Mapping:
    loader.flatten_mapping(node)
    m = Mapping()
    m.line = node.start_mark.line + 1
    m.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str | int | float | bool) and key is not None:
            raise PodnetError("mapping keys must be scalars", where=f"line {key_node.start_mark.line + 1}")
        key = str(key)
        if key in m:
            raise PodnetError(f"duplicate key {key!r}", where=f"line {key_node.start_mark.line + 1}")
        m[key] = loader.construct_object(value_node, deep=True)
        m.key_lines[key] = key_node.start_mark.line + 1
    return m


def _construct_sequence(loader: _Loader, node: yaml.SequenceNode) -> Sequence:
    s = Sequence(loader.construct_object(child, deep=True) for child in node.value)
    s.line = node.start_mark.line + 1
    return s


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def plain(v: Any) -> Any:
    """Mapping/Sequence -> plain dict/list (for storing)."""
    if isinstance(v, dict):
        return {str(k): plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [plain(x) for x in v]
    return v


def rebuild(v: Any, line: int) -> Any:
    """Plain dict/list -> Mapping/Sequence attributed to ``line`` (a stored document read back)."""
    if isinstance(v, dict):
        m = Mapping((k, rebuild(x, line)) for k, x in v.items())
        m.line, m.key_lines = line, {}
        return m
    if isinstance(v, list):
        s = Sequence(rebuild(x, line) for x in v)
        s.line = line
        return s
    return v


@dataclass(frozen=True)
class Doc:
    """One YAML document of a file."""

    path: str
    index: int
    body: Mapping

    @property
    def line(self) -> int:
        return self.body.line

    def where(self, line: int | None = None) -> str:
        return f"{self.path}:{line or self.line}"


def line_of(obj: Any, dotted: str) -> int | None:
    """Best-effort line of a dotted field path (``spec.containers[0].ports``) inside a Mapping."""
    cur = obj
    line = getattr(obj, "line", None)
    for part in _split_path(dotted):
        if isinstance(part, int):
            if isinstance(cur, list) and 0 <= part < len(cur):
                cur = cur[part]
                line = getattr(cur, "line", line)
            else:
                break
        elif isinstance(cur, Mapping) and part in cur:
            line = cur.key_lines.get(part, line)
            cur = cur[part]
        else:
            break
    return line


def _split_path(dotted: str) -> list[str | int]:
    out: list[str | int] = []
    for seg in dotted.split("."):
        while "[" in seg:
            head, _, rest = seg.partition("[")
            if head:
                out.append(head)
            idx, _, seg = rest.partition("]")
            out.append(int(idx) if idx.isdigit() else idx)
        if seg:
            out.append(seg)
    return out


def load_text(text: str, path: str) -> list[Doc]:
    """Parse a multi-document YAML string; empty documents are skipped."""
    try:
        bodies = list(yaml.load_all(text, Loader=_Loader))
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = f"{path}:{mark.line + 1}" if mark else path
        raise PodnetError(f"YAML syntax error: {e.problem or e.context}", where=line) from None
    except yaml.YAMLError as e:
        raise PodnetError(f"YAML error: {e}", where=path) from None
    except PodnetError as e:
        raise PodnetError(e.msg, where=f"{path}:{(e.where or '').removeprefix('line ')}") from None
    docs = []
    for i, body in enumerate(bodies):
        if body is None:
            continue
        if not isinstance(body, Mapping):
            raise PodnetError("each YAML document must be a mapping (a Kubernetes object)",
                              where=f"{path}:{getattr(body, 'line', 1)}")
        docs.append(Doc(path, i, body))
    return docs


def load_files(paths: list[str]) -> list[Doc]:
    docs: list[Doc] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            files = sorted(f for f in path.iterdir() if f.suffix in (".yaml", ".yml", ".json"))
        else:
            files = [path]
        for f in files:
            try:
                text = f.read_text()
            except OSError as e:
                raise PodnetError(f"cannot read file: {e.strerror}", where=str(f)) from None
            docs.extend(load_text(text, str(f)))
    return docs
