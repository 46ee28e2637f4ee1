"""The scheme columns' state: one editor per column, and what the column's buttons do to it.

An editor is {"uid", "preset", "rules", "activation", "auto_name"}: the preset it started from
(None for a loaded custom scheme), the rules its widgets start from, the activation its preset
gains were resolved for, and the name the page gave it (None once the user named it). The
family rows edit the first rule without a glob that covers the family; rules with a name or
parameter glob (GPT-2's "*.c_proj") have rows of their own.
"""

from __future__ import annotations

import copy
from typing import Any

import streamlit as st

from initlab.methods import METHODS
from initlab.presets import PRESETS, preset
from initlab.ui import keys
from initlab.ui.widgets import forget, typed

MAX_SCHEMES = 4
EDITED = " (edited)"

# ---------------------------------------------------------------- pure helpers (tested)


def is_named(rule: dict[str, Any]) -> bool:
    """A rule with a name or a parameter glob: edited on a row of its own."""
    return rule.get("name") is not None or rule.get("param") is not None


def editable_rule(rules: list[dict[str, Any]], family: str, classes: list[str]) -> int | None:
    """Index of the first rule without a glob that covers this family, if any."""
    for index, rule in enumerate(rules):
        if not is_named(rule) and (rule["layers"] == family or rule["layers"] in classes):
            return index
    return None


def spec_dict(value: Any) -> dict[str, Any]:
    """A rule's weight/bias entry as {"method": ..., params}."""
    if value is None or value == "default":
        return {"method": "default"}
    if isinstance(value, str):
        return {"method": value.removesuffix("_")}
    return {**value, "method": str(value.get("method", "default")).removesuffix("_")}


def compose_rules(
    base: list[dict[str, Any]],
    edits: dict[str, dict[str, Any]],
    slots: dict[str, dict[str, Any]],
    named: dict[int, dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """The base rules with each named row's rule replaced and each family's edits applied in
    place (order kept: first match wins), and a new rule at the end for an edited family no
    base rule covered."""
    rules = [dict(named[i]) if named and i in named else dict(r) for i, r in enumerate(base)]
    for family, edit in edits.items():
        index = editable_rule(rules, family, list(slots[family]["classes"]))
        if index is None:
            if all(spec.get("method") == "default" for spec in edit.values()):
                continue
            rules.append({"layers": family})
            index = len(rules) - 1
        rules[index].update(_changed(rules[index], edit))
    return rules


def _changed(rule: dict[str, Any], edit: dict[str, Any]) -> dict[str, Any]:
    """The slots an edit really changes: a widget that reads "default" for a rule's
    `"default"` (or a method name for `{"method": name}`) leaves the rule as it was written."""
    return {slot: spec for slot, spec in edit.items() if spec_dict(rule.get(slot)) != spec}


def method_options(ranks: set[int], current: str) -> list[str]:
    """Methods that accept every rank in this slot (plus the current one, to explain it)."""
    options = [m.name for m in METHODS.values() if all(m.accepts_rank(r) for r in ranks)]
    return options if current in options else [*options, current]


def unique_name(name: str, taken: set[str]) -> str:
    """`name`, or `name (2)`, `name (3)`, ... : the first one no other column uses."""
    if name not in taken:
        return name
    n = 2
    while f"{name} ({n})" in taken:
        n += 1
    return f"{name} ({n})"


def preset_rules(editor: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The rules of the editor's preset for its activation (None: it started from no preset)."""
    if editor["preset"] not in PRESETS:
        return None
    return preset(editor["preset"], editor["activation"]).to_dict()["rules"]


def truthful_name(name: str, auto_name: str | None, edited: bool) -> str:
    """The name a column should carry: a page-given name says "(edited)" once the rules are
    not the preset's any more, and loses it when they are again; a typed name is the user's."""
    if auto_name is None:
        return name
    if edited and name == auto_name:
        return auto_name + EDITED
    if not edited and name == auto_name + EDITED:
        return auto_name
    return name


# ---------------------------------------------------------------- editor state


def editors() -> list[dict[str, Any]]:
    return st.session_state[keys.EDITORS]


def new_editor(
    preset_name: str | None, rules: list[dict[str, Any]], name: str, activation: str
) -> dict[str, Any]:
    uid = st.session_state.get(keys.NEXT_UID, 0)
    st.session_state[keys.NEXT_UID] = uid + 1
    st.session_state[keys.scheme_name(uid)] = name
    return {
        "uid": uid,
        "preset": preset_name,
        "rules": rules,
        "origin": copy.deepcopy(rules),  # what "edited" is measured against
        "activation": activation,
        "auto_name": None,
    }


def preset_editor(name: str, activation: str, taken: set[str] = frozenset()) -> dict[str, Any]:
    scheme = preset(name, activation)
    title = unique_name(scheme.name, set(taken))
    editor = new_editor(name, scheme.to_dict()["rules"], title, activation)
    editor["auto_name"] = title
    return editor


def clear_widgets(uid: int) -> None:
    """Reset a column's rule widgets to its (new) rules: their current values, the ones
    remembered for families the model lacks now, and the marks of edited families."""
    keep = (keys.scheme_name(uid), keys.scheme_preset(uid))
    prefix = keys.column(uid)
    for store in (st.session_state, typed()):
        for key in [k for k in store if str(k).startswith(prefix) and k not in keep]:
            del store[key]
    for editor in editors():
        if editor["uid"] == uid:
            editor.pop("edited", None)


def other_names(uid: int) -> set[str]:
    return {
        st.session_state.get(keys.scheme_name(e["uid"]), "") for e in editors() if e["uid"] != uid
    }


def is_edited(editor: dict[str, Any]) -> bool:
    """The column's rules (as last composed) are not those it started from (its preset's, or
    a loaded file's: a file is run as it says until someone edits it), now or in a family the
    model no longer has (that edit is remembered and comes back with the family)."""
    rules = st.session_state.get(keys.scheme_rules(editor["uid"]), editor["rules"])
    return rules != editor["origin"] or any(editor.get("edited", {}).values())


def follow_activation(activation: str) -> None:
    """Untouched preset columns follow the model's activation (their gains depend on it);
    a column the user edited keeps the edits (and says its gains were set for another one)."""
    for editor in editors():
        if editor["preset"] not in PRESETS or editor["activation"] == activation:
            continue
        if is_edited(editor):
            editor["edited_for"] = editor["activation"]
            continue
        editor["activation"] = activation
        editor["rules"] = preset_rules(editor)
        editor["origin"] = copy.deepcopy(editor["rules"])
        st.session_state.pop(keys.scheme_rules(editor["uid"]), None)
        clear_widgets(editor["uid"])


def mark_edited(
    editor: dict[str, Any], edits: dict[str, dict[str, Any]], slots: dict[str, dict[str, Any]]
) -> None:
    """Per family on screen: do its widgets change the rules? Families not on screen keep
    their mark from when they were."""
    marks = editor.setdefault("edited", {})
    for family, edit in edits.items():
        marks[family] = compose_rules(editor["rules"], {family: edit}, slots) != editor["rules"]


# ---------------------------------------------------------------- the columns' buttons


def on_preset(index: int) -> None:
    """A preset picked: the column takes its rules; a page-given name follows the preset."""
    editor = editors()[index]
    uid, name = editor["uid"], st.session_state[keys.scheme_preset(editor["uid"])]
    if name not in PRESETS:
        return
    scheme = preset(name, st.session_state[keys.ACTIVATION])
    rules = scheme.to_dict()["rules"]
    editor.update(preset=name, rules=rules, origin=copy.deepcopy(rules))
    editor["activation"] = st.session_state[keys.ACTIVATION]
    current = st.session_state.get(keys.scheme_name(uid), "")
    if current in ("", editor["auto_name"], (editor["auto_name"] or "") + EDITED):
        editor["auto_name"] = unique_name(scheme.name, other_names(uid))
        st.session_state[keys.scheme_name(uid)] = editor["auto_name"]
    st.session_state.pop(keys.scheme_rules(uid), None)
    clear_widgets(uid)


def reset(index: int) -> None:
    """Back to the column's preset, as if it had just been picked."""
    editor = editors()[index]
    st.session_state[keys.scheme_preset(editor["uid"])] = editor["preset"]
    on_preset(index)


def add() -> None:
    used = {e["preset"] for e in editors()}
    name = next((p for p in PRESETS if p not in used), "pytorch_default")
    taken = {st.session_state.get(keys.scheme_name(e["uid"]), "") for e in editors()}
    editors().append(preset_editor(name, st.session_state[keys.ACTIVATION], taken))


def remove(index: int) -> None:
    editor = editors().pop(index)
    forget(keys.column(editor["uid"]))  # what was typed in it can never be shown again


def duplicate(index: int) -> None:
    source = editors()[index]
    uid = source["uid"]
    rules = st.session_state.get(keys.scheme_rules(uid), source["rules"])
    taken = {st.session_state.get(keys.scheme_name(e["uid"]), "") for e in editors()}
    name = unique_name(st.session_state.get(keys.scheme_name(uid), "scheme") + " (copy)", taken)
    twin = new_editor(source["preset"], rules, name, source["activation"])
    twin["origin"] = copy.deepcopy(source["origin"])  # edited as much as the source is
    editors().insert(index + 1, twin)


def add_named_rule(index: int, family: str) -> None:
    """A rule for modules whose qualified name matches a glob, first (so it wins over the
    family's own rule); it starts matching everything of the family and changing nothing."""
    editor = editors()[index]
    rules = st.session_state.get(keys.scheme_rules(editor["uid"]), editor["rules"])
    editor["rules"] = [
        {"layers": family, "name": "*", "weight": "default", "bias": "default"},
        *rules,
    ]
    _renumbered(editor)


def remove_rule(index: int, rule: int) -> None:
    editor = editors()[index]
    rules = list(st.session_state.get(keys.scheme_rules(editor["uid"]), editor["rules"]))
    del rules[rule]
    editor["rules"] = rules
    _renumbered(editor)


def _renumbered(editor: dict[str, Any]) -> None:
    """The named rows' widgets are keyed by rule index: after an insert or a removal they
    start again from the rules (the family rows keep what was typed)."""
    uid = editor["uid"]
    st.session_state.pop(keys.scheme_rules(uid), None)
    forget(keys.named_rules(uid))
