"""A griffe extension: the API reference reads docstrings as Napoleon does.

Three rewrites of each docstring's text, before griffe parses it:

* ``Example:``, the section title jaxnn's docstrings use (STYLE.md), becomes
  ``Examples:``, the one griffe's Google parser knows, so that doctests render
  as code (griffe renders an unknown title as a note, and the doctest as
  quoted text).
* Sphinx roles become cross-references. The docstrings name other objects the
  Sphinx way (``:class:`~jaxnn.Trainer```, ``:func:`fit```,
  ``:meth:`Trainer.fit <jaxnn.Trainer.fit>```), which mkdocstrings would print
  as they are. Each becomes an optional cross-reference: the name is resolved
  in the scope of the object whose docstring holds it (as Sphinx would), and
  is a link when the reference renders that object; otherwise it stays plain
  code, and the strict build does not fail on it.

* ``text::`` before an indented block becomes ``text:``; the block is code in
  Markdown already.

Loaded by mkdocs.yml (``extensions: [docs/griffe_roles.py]``); not a page.
"""

from __future__ import annotations

import contextlib
import html
import re
from typing import Any

import griffe

_ROLE = re.compile(
    r":(?:class|func|meth|mod|attr|data|exc|obj):`(?P<body>[^`]+)`"
)
_EXAMPLE = re.compile(r"^(?P<indent>[ \t]*)Example:[ \t]*$", flags=re.MULTILINE)
_LITERAL = re.compile(r"(?<=[^:\s]):: *$", flags=re.MULTILINE)
_EXPLICIT = re.compile(r"^(?P<title>.+?)\s*<(?P<target>[^<>]+)>$")


def _target_path(obj: griffe.Object, name: str) -> str | None:
    """The canonical path of ``name`` as seen from ``obj``, or ``None``."""
    collection = obj.modules_collection
    candidates = []
    if "." in name:
        candidates.append(name)  # a full path, or one relative to the package
    unresolved = (griffe.NameResolutionError, ValueError, KeyError)
    with contextlib.suppress(*unresolved):
        candidates.append(obj.resolve(name))
    head, _, rest = name.partition(".")
    if rest:  # "Trainer.fit": resolve the head, then walk the members
        with contextlib.suppress(*unresolved):
            candidates.append(f"{obj.resolve(head)}.{rest}")
    for path in candidates:
        try:
            found = collection.get_member(path)
        except (KeyError, ValueError, griffe.AliasResolutionError):
            continue
        try:
            return (
                found.final_target.path
                if isinstance(found, griffe.Alias)
                else found.path
            )
        except (griffe.AliasResolutionError, griffe.CyclicAliasError):
            return path
    return None


def _rewrite(obj: griffe.Object, text: str) -> str:
    def one(match: re.Match) -> str:
        body = match["body"].strip()
        explicit = _EXPLICIT.match(body)
        if explicit:
            title, target = explicit["title"], explicit["target"]
        else:
            target = body.lstrip("~")
            title = (
                target.rsplit(".", 1)[-1] if body.startswith("~") else target
            )
        path = _target_path(obj, target.lstrip("~"))
        code = f"<code>{html.escape(title)}</code>"
        if path is None:
            return code
        identifier = html.escape(path)
        return f'<autoref identifier="{identifier}" optional>{code}</autoref>'

    text = _EXAMPLE.sub(r"\g<indent>Examples:", _ROLE.sub(one, text))
    return _LITERAL.sub(":", text)


def _walk(obj: griffe.Object, seen: set[int]) -> None:
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if obj.docstring is not None:
        obj.docstring.value = _rewrite(obj, obj.docstring.value)
    for member in obj.members.values():
        if isinstance(member, griffe.Alias):
            continue  # documented where it is defined
        _walk(member, seen)


class SphinxRoles(griffe.Extension):
    """Rewrites every docstring of a loaded package, before it is parsed."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        del kwargs
        _walk(pkg, set())
