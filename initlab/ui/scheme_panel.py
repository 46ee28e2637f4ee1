"""Scheme columns: each starts from a preset; per layer family a weight and a bias method with
parameter widgets generated from the method registry. Invalid input shows `st.error` in place.

An editor's state is {"uid", "preset", "rules", "activation"}: the rules it started from. The
family rows edit the first rule (without a name glob) that covers the family; rules with a
name glob (e.g. GPT-2's "*.c_proj") are kept as they are and listed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

from initlab.methods import METHODS, parse_method_spec
from initlab.presets import PRESETS, preset
from initlab.ui.text import md
from initlab.ui.widgets import forget, param_widget, seed_value, typed

MAX_SCHEMES = 4
SLOTS = ("weight", "bias")


# ---------------------------------------------------------------- pure helpers (tested)


def editable_rule(rules: list[dict[str, Any]], family: str, classes: list[str]) -> int | None:
    """Index of the first rule without a name glob that covers this family, if any."""
    for index, rule in enumerate(rules):
        if rule.get("name") is None and (rule["layers"] == family or rule["layers"] in classes):
            return index
    return None


def spec_dict(value: Any) -> dict[str, Any]:
    """A rule's weight/bias entry as {"method": ..., params}."""
    if value is None or value == "default":
        return {"method": "default"}
    if isinstance(value, str):
        return {"method": value.removesuffix("_")}
    return {**value, "method": str(value.get("method", "default")).removesuffix("_")}


def compose_rules(base: list[dict[str, Any]], edits: dict[str, dict[str, Any]],
                  slots: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:  # fmt: skip
    """The base rules with each family's edits applied in place (order kept: first match
    wins), and a new rule at the end for an edited family no base rule covered."""
    rules = [dict(rule) for rule in base]
    for family, edit in edits.items():
        index = editable_rule(rules, family, list(slots[family]["classes"]))
        if index is None:
            if all(spec.get("method") == "default" for spec in edit.values()):
                continue
            rules.append({"layers": family})
            index = len(rules) - 1
        rules[index].update(edit)
    return rules


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


# ---------------------------------------------------------------- editor state


def new_editor(preset_name: str | None, rules: list[dict[str, Any]], name: str,
               activation: str) -> dict[str, Any]:  # fmt: skip
    uid = st.session_state.get("next_uid", 0)
    st.session_state["next_uid"] = uid + 1
    st.session_state[f"s{uid}.name"] = name
    return {"uid": uid, "preset": preset_name, "rules": rules, "activation": activation}


def preset_editor(name: str, activation: str) -> dict[str, Any]:
    scheme = preset(name, activation)
    return new_editor(name, scheme.to_dict()["rules"], scheme.name, activation)


def _clear_widgets(uid: int) -> None:
    """Reset a column's rule widgets to its (new) rules: their current values, the ones
    remembered for families the model lacks now, and the marks of edited families."""
    keep = (f"s{uid}.name", f"s{uid}.preset")
    for store in (st.session_state, typed()):
        for key in [k for k in store if str(k).startswith(f"s{uid}.") and k not in keep]:
            del store[key]
    for editor in st.session_state.get("editors", []):
        if editor["uid"] == uid:
            editor.pop("edited", None)


def _on_preset(index: int) -> None:
    editor = st.session_state["editors"][index]
    uid, name = editor["uid"], st.session_state[f"s{editor['uid']}.preset"]
    if name not in PRESETS:
        return
    old_title = PRESETS[editor["preset"]].title if editor["preset"] in PRESETS else None
    scheme = preset(name, st.session_state["activation"])
    editor.update(preset=name, rules=scheme.to_dict()["rules"])
    if st.session_state.get(f"s{uid}.name") in (old_title, ""):
        st.session_state[f"s{uid}.name"] = unique_name(scheme.name, _other_names(uid))
    _clear_widgets(uid)


def _other_names(uid: int) -> set[str]:
    editors = st.session_state.get("editors", [])
    return {st.session_state.get(f"s{e['uid']}.name", "") for e in editors if e["uid"] != uid}


def follow_activation(activation: str) -> None:
    """Untouched preset columns follow the model's activation (their gains depend on it);
    a column the user edited keeps the edits (and says its gains were set for another one)."""
    for editor in st.session_state["editors"]:
        if editor["preset"] not in PRESETS or editor["activation"] == activation:
            continue
        uid = editor["uid"]
        if _edited(editor):
            editor["edited_for"] = editor["activation"]
            continue
        editor["rules"] = preset(editor["preset"], activation).to_dict()["rules"]
        editor["activation"] = activation
        _clear_widgets(uid)


def _edited(editor: dict[str, Any]) -> bool:
    """The column's widgets change its rules, now or in a family the model no longer has
    (its edit is remembered and comes back with the family, so it must not be reset)."""
    rules = st.session_state.get(f"s{editor['uid']}.rules", editor["rules"])
    return rules != editor["rules"] or any(editor.get("edited", {}).values())


def mark_edited(editor: dict[str, Any], edits: dict[str, dict[str, Any]],
                slots: dict[str, dict[str, Any]]) -> None:  # fmt: skip
    """Per family on screen: do its widgets change the rules? Families not on screen keep
    their mark from when they were."""
    marks = editor.setdefault("edited", {})
    for family, edit in edits.items():
        marks[family] = compose_rules(editor["rules"], {family: edit}, slots) != editor["rules"]


def _add() -> None:
    editors = st.session_state["editors"]
    used = {e["preset"] for e in editors}
    name = next((p for p in PRESETS if p not in used), "pytorch_default")
    editors.append(preset_editor(name, st.session_state["activation"]))


def _remove(index: int) -> None:
    editor = st.session_state["editors"].pop(index)
    forget(f"s{editor['uid']}.")  # what was typed in it can never be shown again


def _duplicate(index: int) -> None:
    editors = st.session_state["editors"]
    source = editors[index]
    rules = st.session_state.get(f"s{source['uid']}.rules", source["rules"])
    uid = source["uid"]
    taken = {st.session_state.get(f"s{e['uid']}.name", "") for e in editors}
    name = unique_name(st.session_state.get(f"s{uid}.name", "scheme") + " (copy)", taken)
    copy = new_editor(source["preset"], rules, name, source["activation"])
    editors.insert(index + 1, copy)


# ---------------------------------------------------------------- rendering


def slot_ui(uid: int, family: str, slot: str, ranks: set[int], base: dict[str, Any]) -> Any:
    """Method and parameters of one (family, weight|bias); None when invalid (error shown)."""
    key = f"s{uid}.{family}.{slot}"
    base_method = base["method"]
    seed_value(f"{key}.method", base_method)
    options = method_options(ranks, st.session_state[f"{key}.method"])
    method = st.selectbox(slot, options, key=f"{key}.method", help=_methods_help(options))
    entry = METHODS.get(method)
    spec: dict[str, Any] = {"method": method}
    if entry is not None and entry.params:
        columns = st.columns(min(len(entry.params), 3))
        for i, p in enumerate(entry.params):
            initial = base.get(p.name, p.default) if method == base_method else p.default
            with columns[i % len(columns)]:
                spec[p.name] = param_widget(p, f"{key}.{method}.{p.name}", initial)
    if method == base_method and base.get("scale", 1.0) != 1.0:
        spec["scale"] = base["scale"]
        st.caption(f"× scale {md(base['scale'])} (from the preset)")
    try:
        parse_method_spec(spec, f"{family} {slot}")
    except ValueError as exc:
        st.error(md(exc))
        return None
    return spec


def _methods_help(options: list[str]) -> str:
    return "\n".join(f"- **{n}**: {METHODS[n].summary}" for n in options if n in METHODS)


def family_ui(uid: int, family: str, slot_info: dict[str, Any], base_rule: dict[str, Any] | None
              ) -> dict[str, Any] | None:  # fmt: skip
    classes = md(f"({', '.join(slot_info['classes'])})")
    st.markdown(f"**{md(family)}** :small[{classes}]")
    edit: dict[str, Any] = {}
    for slot in SLOTS:
        if slot_info[slot]:
            base = spec_dict((base_rule or {}).get(slot))
            spec = slot_ui(uid, family, slot, set(slot_info[slot]), base)
            if spec is None:
                return None
            edit[slot] = spec
    return edit


def editor_ui(
    index: int,
    editor: dict[str, Any],
    slots: dict[str, Any],
    check: Callable[[dict[str, Any]], str | None],
    taken: set[str],
    warn: Callable[[dict[str, Any]], list[tuple[str, str]]] | None = None,
) -> dict[str, Any] | None:
    """One scheme column; returns the scheme dict, or None when something in it is invalid."""
    uid = editor["uid"]
    name = st.text_input("Scheme name", key=f"s{uid}.name")
    name_problem = _name_problem(name, taken)
    if name_problem:
        st.error(md(name_problem))
    _preset_select(index, editor)
    if editor.get("edited_for") and editor["edited_for"] != st.session_state["activation"]:
        st.caption(f"Edited by hand: its gains are still those for {md(editor['edited_for'])}.")
    edits, valid = {}, name_problem is None
    for family, info in slots.items():
        i = editable_rule(editor["rules"], family, list(info["classes"]))
        edit = family_ui(uid, family, info, editor["rules"][i] if i is not None else None)
        valid = valid and edit is not None
        edits[family] = edit or {}
    _named_rules_caption(editor["rules"])
    _column_buttons(index, uid)
    if not valid:
        return None
    rules = compose_rules(editor["rules"], edits, slots)
    st.session_state[f"s{uid}.rules"] = rules
    mark_edited(editor, edits, slots)
    origin = {"preset": editor["preset"]} if editor["preset"] else {}
    scheme = {"name": name, "rules": rules, **origin}
    problem = check(scheme)
    if problem:
        st.error(md(problem))
        return None
    for level, message in warn(scheme) if warn else ():
        st.caption(f"{WARNING_ICONS.get(level, '')} {md(message)}")
    return scheme


def _name_problem(name: str, taken: set[str]) -> str | None:
    if name.strip() in taken:
        return f"Another column is already called '{name.strip()}'; scheme names must be unique."
    return None


def _preset_select(index: int, editor: dict[str, Any]) -> None:
    options = list(PRESETS) if editor["preset"] in PRESETS else ["(loaded)", *PRESETS]
    seed_value(f"s{editor['uid']}.preset", editor["preset"] or "(loaded)")
    st.selectbox("Start from preset", options, key=f"s{editor['uid']}.preset",
                 on_change=_on_preset, args=(index,),
                 format_func=lambda p: PRESETS[p].title if p in PRESETS else p,
                 help="\n".join(f"- **{p.title}**: {p.why}" for p in PRESETS.values()))  # fmt: skip


def _named_rules_caption(rules: list[dict[str, Any]]) -> None:
    named = [r for r in rules if r.get("name")]
    for rule in named:
        method = spec_dict(rule.get("weight"))["method"]
        # the glob is shown escaped, not as `code`: a backtick in it would end the code span
        st.caption(f"also: {md(rule['layers'])} named '{md(rule['name'])}' → weight {md(method)}")


def _column_buttons(index: int, uid: int) -> None:
    left, right = st.columns(2)
    editors = st.session_state["editors"]
    left.button("Duplicate", key=f"s{uid}.dup", on_click=_duplicate, args=(index,),
                disabled=len(editors) >= MAX_SCHEMES, width="stretch")  # fmt: skip
    right.button("Remove", key=f"s{uid}.remove", on_click=_remove, args=(index,),
                 disabled=len(editors) <= 1, width="stretch")  # fmt: skip


def _names_before(index: int) -> set[str]:
    editors = st.session_state["editors"][:index]
    return {st.session_state.get(f"s{e['uid']}.name", "").strip() for e in editors}


WARNING_ICONS = {"warning": ":material/warning:", "info": ":material/info:"}


def schemes_ui(
    slots: dict[str, Any],
    check: Callable[[dict[str, Any]], str | None],
    warn: Callable[[dict[str, Any]], list[tuple[str, str]]] | None = None,
) -> list[dict[str, Any] | None]:
    """All scheme columns side by side; one entry per column (None where invalid)."""
    editors = st.session_state["editors"]
    columns = st.columns(len(editors), border=True)
    out = []
    for index, (column, editor) in enumerate(zip(columns, editors, strict=True)):
        with column:
            out.append(editor_ui(index, editor, slots, check, _names_before(index), warn))
    st.button("Add scheme", key="add_scheme", on_click=_add, icon=":material/add:",
              disabled=len(editors) >= MAX_SCHEMES)  # fmt: skip
    return out
