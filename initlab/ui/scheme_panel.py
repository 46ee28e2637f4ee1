"""Scheme columns: each starts from a preset; per layer family a weight and a bias method with
parameter widgets generated from the method registry, and rows for rules with a name or
parameter glob. Compact: a column shows its name and preset, its rules fold away, so the
results are on screen without scrolling. Invalid input shows `st.error` in place.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

from initlab.methods import METHODS, parse_method_spec
from initlab.presets import PRESETS
from initlab.ui import editors as ed
from initlab.ui import keys
from initlab.ui.text import md
from initlab.ui.widgets import gain_value, param_widget, seed_value

SLOTS = ("weight", "bias")
LOADED = "(loaded)"
WARNING_ICONS = {"warning": ":material/warning:", "info": ":material/info:"}
Check = Callable[[dict[str, Any]], str | None]
Warn = Callable[[dict[str, Any]], list[tuple[str, str]]]
Prune = Callable[[dict[str, Any]], dict[str, Any]]


# ---------------------------------------------------------------- one slot


def slot_ui(
    key: str, label: str, ranks: set[int], base: dict[str, Any], scale: bool = False
) -> dict[str, Any] | None:
    """Method and parameters of one weight|bias slot; None when invalid (error shown).
    `scale` adds an editable scale (rows with a glob); else a preset's scale is kept and said."""
    base_method = base["method"]
    seed_value(f"{key}.method", base_method)
    options = ed.method_options(ranks, st.session_state[f"{key}.method"])
    method = st.selectbox(label, options, key=f"{key}.method", help=_methods_help(options))
    spec: dict[str, Any] = {"method": method}
    entry = METHODS.get(method)
    for p in entry.params if entry is not None else ():
        initial = base.get(p.name, p.default) if method == base_method else p.default
        spec[p.name] = param_widget(p, f"{key}.{method}.{p.name}", initial)
    spec |= _scale_ui(key, base, method == base_method, scale and method != "default")
    try:
        parse_method_spec(spec, label)
    except ValueError as exc:
        st.error(md(exc))
        return None
    return spec


def _scale_ui(key: str, base: dict[str, Any], same: bool, editable: bool) -> dict[str, Any]:
    kept = base.get("scale", 1.0) if same else 1.0
    if editable:
        seed_value(f"{key}.scale", str(kept))
        text = st.text_input("scale", key=f"{key}.scale", help=SCALE_HELP)
        value = gain_value(text)
        return {} if value == 1.0 else {"scale": value}
    if kept != 1.0:
        st.caption(f"× scale {md(kept)} (from the preset)")
        return {"scale": kept}
    return {}


SCALE_HELP = (
    "multiplies the initialized tensor: a number, or 1/sqrt(matches), one over the square "
    "root of the number of modules this rule matches (GPT-2's 1/√(2·n_layers) on *.c_proj)"
)


def _methods_help(options: list[str]) -> str:
    return "\n".join(f"- **{n}**: {METHODS[n].summary}" for n in options if n in METHODS)


# ---------------------------------------------------------------- family rows


def family_ui(
    uid: int, family: str, slot_info: dict[str, Any], base_rule: dict[str, Any] | None
) -> dict[str, Any] | None:
    classes = md(f"({', '.join(slot_info['classes'])})")
    st.markdown(f"**{md(family)}** :small[{classes}]")
    edit: dict[str, Any] = {}
    for slot in SLOTS:
        if slot_info[slot]:
            base = ed.spec_dict((base_rule or {}).get(slot))
            key = keys.slot(uid, family, slot)
            spec = slot_ui(key, slot, set(slot_info[slot]), base)
            if spec is None:
                return None
            edit[slot] = spec
    return edit


def families_ui(
    editor: dict[str, Any], slots: dict[str, Any]
) -> tuple[dict[str, dict[str, Any]], bool]:
    """Every family of the model: (its edit, all valid)."""
    edits, valid = {}, True
    for family, info in slots.items():
        i = ed.editable_rule(editor["rules"], family, list(info["classes"]))
        base = editor["rules"][i] if i is not None else None
        edit = family_ui(editor["uid"], family, info, base)
        valid = valid and edit is not None
        edits[family] = edit or {}
    return edits, valid


# ---------------------------------------------------------------- rows with a glob


def named_ui(
    index: int, editor: dict[str, Any], slots: dict[str, Any]
) -> tuple[dict[int, dict[str, Any]], bool]:
    """Every rule with a name or parameter glob: (rule index → its rule, all valid)."""
    out, valid = {}, True
    for i, rule in enumerate(editor["rules"]):
        if ed.is_named(rule):
            edited = named_rule_ui(index, editor["uid"], i, rule, slots)
            valid = valid and edited is not None
            out[i] = edited or rule
    if slots:
        st.button(
            "Add a rule by name",
            key=keys.button(editor["uid"], "add_rule"),
            on_click=ed.add_named_rule,
            args=(index, next(iter(slots))),
            icon=":material/add:",
            help=ADD_RULE_HELP,
        )
    return out, valid


ADD_RULE_HELP = (
    "A rule for the modules whose qualified name matches a glob (e.g. *.c_proj), or for some "
    "parameters of a module (e.g. weight_hh_l* of an RNN): it comes first, so it wins."
)


def named_rule_ui(
    index: int, uid: int, i: int, rule: dict[str, Any], slots: dict[str, Any]
) -> dict[str, Any] | None:
    """One rule with a glob: its layers, module-name glob, parameter glob and methods."""
    st.markdown(f"**rule {i}** :small[by name]")
    layers = _named_layers_ui(uid, i, rule, slots)
    out: dict[str, Any] = {"layers": layers}
    for part, label in (("name", "module name glob"), ("param", "parameter glob")):
        seed_value(keys.named_rule(uid, i, part), rule.get(part) or "")
        text = st.text_input(label, key=keys.named_rule(uid, i, part), help=GLOB_HELP[part])
        if text:
            out[part] = text
    ranks = set().union(*(slots[layers][s] for s in SLOTS)) if layers in slots else set()
    for slot in SLOTS:
        key = keys.named_rule(uid, i, slot)
        spec = slot_ui(key, slot, ranks, ed.spec_dict(rule.get(slot)), scale=True)
        if spec is None:
            return None
        # a slot left as the rule has it keeps the rule's own spelling ("default", a name,
        # or no entry at all)
        if spec != ed.spec_dict(rule.get(slot)):
            out[slot] = spec
        elif slot in rule:
            out[slot] = rule[slot]
    st.button(
        "Remove this rule",
        key=keys.named_rule(uid, i, "remove"),
        on_click=ed.remove_rule,
        args=(index, i),
        icon=":material/delete:",
    )
    return out


GLOB_HELP = {
    "name": "fnmatch glob on the module's qualified name, e.g. *.c_proj or h.0.*; empty: any",
    "param": "fnmatch glob on the parameter's own name, e.g. weight_hh_l* (an RNN's "
    "recurrent weights); empty: every weight and bias of the module",
}


def _named_layers_ui(uid: int, i: int, rule: dict[str, Any], slots: dict[str, Any]) -> str:
    options = list(dict.fromkeys([*slots, rule["layers"]]))
    seed_value(keys.named_rule(uid, i, "layers"), rule["layers"])
    return st.selectbox("layers", options, key=keys.named_rule(uid, i, "layers"))


# ---------------------------------------------------------------- one column


def editor_ui(
    index: int,
    editor: dict[str, Any],
    slots: dict[str, Any],
    check: Check,
    taken: set[str],
    warn: Warn | None = None,
    prune: Prune | None = None,
) -> dict[str, Any] | None:
    """One scheme column; returns the scheme dict, or None when something in it is invalid."""
    uid = editor["uid"]
    name = _head_ui(index, editor)
    name_problem = _name_problem(name, taken)
    if name_problem:
        st.error(md(name_problem))
    with st.expander("Rules", icon=":material/tune:"):
        _preset_why(editor)
        edits, valid = families_ui(editor, slots)
        named, named_valid = named_ui(index, editor, slots)
    if not (valid and named_valid):
        st.error("A value in Rules is invalid: open Rules to see which.")
        return None
    rules = ed.compose_rules(editor["rules"], edits, slots, named)
    st.session_state[keys.scheme_rules(uid)] = rules
    ed.mark_edited(editor, edits, slots)
    return None if name_problem else _scheme(index, editor, name, rules, check, warn, prune)


def _scheme(
    index: int,
    editor: dict[str, Any],
    name: str,
    rules: list[dict[str, Any]],
    check: Check,
    warn: Warn | None,
    prune: Prune | None,
) -> dict[str, Any] | None:
    """The column's scheme: named truthfully (an edited preset is custom), checked, warned."""
    edited = ed.is_edited(editor)
    if _rename(editor, name, edited):
        st.rerun()  # the name field is drawn already; the next run shows the true name
    _edited_caption(index, editor, edited)
    origin = {"preset": editor["preset"]} if editor["preset"] and not edited else {}
    scheme = {"name": name.strip(), "rules": rules, **origin}
    problem = check(scheme)
    if problem:
        st.error(md(problem))
        return None
    warnings_ui(warn(scheme) if warn else [])
    return prune(scheme) if prune and edited else scheme


def warnings_ui(found: list[tuple[str, str]]) -> None:
    """A column's warnings, folded under a count: each is a paragraph, and four columns of
    them would push the results off the screen."""
    if not found:
        return
    worst = "warning" if any(level == "warning" for level, _ in found) else "info"
    label = f"{len(found)} {'warning' if worst == 'warning' else 'note'}"
    with st.expander(label + ("s" if len(found) > 1 else ""), icon=WARNING_ICONS[worst]):
        for level, message in found:
            st.caption(f"{WARNING_ICONS.get(level, '')} {md(message)}")


def _rename(editor: dict[str, Any], name: str, edited: bool) -> bool:
    """Queue the truthful name for the next run (before its widget is drawn); True if so."""
    true_name = ed.truthful_name(name, editor["auto_name"], edited)
    if true_name == name:
        return False
    editor["pending_name"] = true_name
    return True


def _head_ui(index: int, editor: dict[str, Any]) -> str:
    """The name and preset fields with the column's buttons beside them: one row while the
    columns are wide (one or two), the preset on a row of its own when they are narrow."""
    uid = editor["uid"]
    if "pending_name" in editor:
        st.session_state[keys.scheme_name(uid)] = editor.pop("pending_name")
    count = len(ed.editors())
    wide = count <= 2
    cells = st.columns([5, 5, 2] if wide else [5, 2], gap="small", vertical_alignment="center")
    name = cells[0].text_input(
        "Scheme name",
        key=keys.scheme_name(uid),
        label_visibility="collapsed",
        placeholder="Scheme name",
    )
    with cells[-1].popover(":material/more_vert:", help="Duplicate or remove this scheme"):
        _column_buttons(index, uid, count)
    with cells[1] if wide else st.container():
        _preset_select(index, editor)
    return name


def _column_buttons(index: int, uid: int, count: int) -> None:
    st.button(
        "Duplicate",
        key=keys.button(uid, "dup"),
        icon=":material/content_copy:",
        on_click=ed.duplicate,
        args=(index,),
        disabled=count >= ed.MAX_SCHEMES,
        width="stretch",
    )
    st.button(
        "Remove",
        key=keys.button(uid, "remove"),
        icon=":material/close:",
        on_click=ed.remove,
        args=(index,),
        disabled=count <= 1,
        width="stretch",
    )


def _edited_caption(index: int, editor: dict[str, Any], edited: bool) -> None:
    if editor.get("edited_for") and editor["edited_for"] != st.session_state[keys.ACTIVATION]:
        st.caption(f"Edited by hand: its gains are still those for {md(editor['edited_for'])}.")
    if edited and editor["preset"] in PRESETS:
        left, right = st.columns([3, 1], vertical_alignment="center")
        left.caption(
            f"Edited: a custom scheme now, no longer {md(PRESETS[editor['preset']].title)}"
        )
        right.button(
            ":material/undo:",
            key=keys.button(editor["uid"], "reset"),
            on_click=ed.reset,
            args=(index,),
            help="Back to the preset",
        )


def _name_problem(name: str, taken: set[str]) -> str | None:
    if not name.strip():
        return "A scheme needs a name."
    if name.strip() in taken:
        return f"Another column is already called '{name.strip()}'; scheme names must be unique."
    return None


def _preset_select(index: int, editor: dict[str, Any]) -> None:
    options = list(PRESETS) if editor["preset"] in PRESETS else [LOADED, *PRESETS]
    seed_value(keys.scheme_preset(editor["uid"]), editor["preset"] or LOADED)
    st.selectbox(
        "Preset",
        options,
        key=keys.scheme_preset(editor["uid"]),
        on_change=ed.on_preset,
        args=(index,),
        format_func=lambda p: PRESETS[p].title if p in PRESETS else p,
        label_visibility="collapsed",
    )


def _preset_why(editor: dict[str, Any]) -> None:
    """What the column's preset is for (the preset field itself has no room for it)."""
    if editor["preset"] in PRESETS:
        entry = PRESETS[editor["preset"]]
        st.caption(f"Preset **{md(entry.title)}**: {md(entry.why)}")


def _names_before(index: int) -> set[str]:
    editors = ed.editors()[:index]
    return {st.session_state.get(keys.scheme_name(e["uid"]), "").strip() for e in editors}


def schemes_ui(
    slots: dict[str, Any], check: Check, warn: Warn | None = None, prune: Prune | None = None
) -> list[dict[str, Any] | None]:
    """All scheme columns side by side, an add button after them; one entry per column
    (None where invalid)."""
    editors = ed.editors()
    room = len(editors) < ed.MAX_SCHEMES  # the add button takes a narrow column of its own
    # about 48 px for the add button on a page of this width, however many columns share it
    columns = st.columns([*[1.0] * len(editors), *([0.065 * len(editors)] if room else [])])
    out = []
    for index, (column, editor) in enumerate(zip(columns, editors, strict=False)):
        with column.container(border=True, key=keys.column_box(editor["uid"])):
            out.append(editor_ui(index, editor, slots, check, _names_before(index), warn, prune))
    if room:
        columns[-1].button(":material/add:", key="add_scheme", on_click=ed.add, help="Add a scheme")
    return out
