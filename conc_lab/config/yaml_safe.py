"""A hardened YAML loader for matrix files: the safe loader, refusing duplicate keys and alias bombs.

``load_yaml`` raises ``yaml.YAMLError`` (or ``RecursionError`` / ``ValueError`` for a document
nested too deeply or holding a number too long to read); ``conc_lab.config.document`` turns each
into a ``ConfigError``.
"""

from __future__ import annotations

from typing import Any

import yaml

from conc_lab.config.errors import show

#: The most values (scalars, lists, mappings) a matrix file may hold once its aliases are expanded.
#: A real matrix holds hundreds; an alias bomb (each level naming the one before nine times) billions.
MAX_YAML_NODES = 1_000_000
_MERGE_TAG = "tag:yaml.org,2002:merge"


class _StrictLoader(yaml.SafeLoader):
    """The safe loader, refusing duplicate keys (YAML silently keeps the last one)."""


def _fast_loader() -> type | None:
    """The strict loader on libyaml's parser (about 3x faster on a long matrix), where it is safe.

    libyaml refuses nesting past 1000 levels from 0.2.5 on; an older one would let the
    parser's recursion overflow the C stack, so only then is the pure-Python parser used.
    """
    if not yaml.__with_libyaml__ or yaml._yaml.get_version() < (0, 2, 5):
        return None

    class _StrictCLoader(yaml.CSafeLoader):
        """``_StrictLoader`` with libyaml's parser."""

    _StrictCLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
    return _StrictCLoader


def load_yaml(text: str) -> Any:
    """The document in ``text``, refused (a ``YAMLError``) before it is built if it expands too far."""
    loader = (_FAST_LOADER or _StrictLoader)(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _check_expansion(root: yaml.Node) -> None:
    """Count the nodes of the document as if every alias were copied out, without copying anything.

    An alias is the node it names, shared: its expanded size is computed once (memo by
    identity), so the walk is linear in the text, however far the aliases multiply it.
    """
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()  # on the path from the root: meeting one again is a cycle
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        children = _children(node)
        if children_done:
            open_nodes.discard(id(node))
            sizes[id(node)] = 1 + sum(sizes[id(child)] for child in children)
            if sizes[id(node)] > MAX_YAML_NODES:
                raise yaml.composer.ComposerError(
                    None,
                    None,
                    f"expands to more than {MAX_YAML_NODES:,} values once its aliases are repeated "
                    "(an alias bomb?); a matrix file needs far fewer",
                    node.start_mark,
                )
        elif id(node) in open_nodes:
            raise yaml.composer.ComposerError(
                None, None, "an alias refers to a list or mapping that contains it", node.start_mark
            )
        elif id(node) not in sizes:
            open_nodes.add(id(node))
            stack.append((node, True))
            stack.extend((child, False) for child in children if id(child) not in sizes)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return node.value
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    """A mapping whose keys are each written once; ``<<: *base`` merges, and keys written here override it."""
    seen = set()
    for key_node, _ in node.value:
        if key_node.tag == _MERGE_TAG:
            continue  # the merged keys are defaults: construct_mapping lets the written ones win
        key = loader.construct_object(key_node, deep=deep)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, f"unhashable key {show(key)}", key_node.start_mark
            ) from None
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {show(key)}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_FAST_LOADER = _fast_loader()
