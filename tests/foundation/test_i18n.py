"""The catalogues: every text of the code is translated into Chinese, and every translation is well formed.

Rendering tests per front end (tests/slack, tests/console) show the texts in use; this file checks the catalogues
against the code itself, through Babel's extractor, so a new ``_("...")`` without a translation fails here.
"""

from __future__ import annotations

import ast
import string
from pathlib import Path

import pytest
from babel.messages.pofile import read_po

from bot.cli_i18n import ROOT, SOURCE_PACKAGES, as_po_entries, extract_texts, untranslated
from services import i18n
from services.i18n import CHINESE, ENGLISH, LOCALE_DIR

PO_FILES = sorted((LOCALE_DIR / CHINESE / "LC_MESSAGES").glob("*.po"))


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


def test_every_text_of_the_code_has_a_chinese_translation() -> None:
    lacking = untranslated(CHINESE)
    assert not lacking, (
        f"{len(lacking)} texts lack a zh_CN translation (labbot i18n missing prints these):\n"
        + as_po_entries(lacking[:40])
    )


@pytest.mark.parametrize("path", PO_FILES, ids=lambda p: p.name)
def test_catalogue_entries_are_complete_and_keep_their_placeholders(path: Path) -> None:
    with path.open("rb") as handle:
        po = read_po(handle, locale=CHINESE)
    problems = []
    for message in po:
        if not message.id:
            continue
        ids = message.id if isinstance(message.id, (list, tuple)) else (message.id,)
        strings = message.string if isinstance(message.string, (list, tuple)) else (message.string,)
        if message.fuzzy or not all(strings):
            problems.append(f"untranslated or fuzzy: {ids[0]!r}")
            continue
        for text in strings:
            if _fields(text) != _fields(ids[0]) and _fields(text) != _fields(ids[-1]):
                problems.append(f"placeholders differ: {ids[0]!r} -> {text!r}")
    assert not problems, "\n".join(problems)


def _entries() -> list[tuple[str, object, object]]:
    """Every entry of every Chinese catalogue: (file name, msgid — a pair for plurals —, translation)."""
    found = []
    for path in PO_FILES:
        with path.open("rb") as handle:
            for message in read_po(handle, locale=CHINESE):
                if message.id:
                    plural = isinstance(message.id, (list, tuple))
                    key = (message.id[0], message.id[1]) if plural else message.id
                    value = tuple(message.string) if plural else message.string
                    found.append((path.name, key, value))
    return found


def test_no_text_is_translated_twice_differently() -> None:
    seen: dict[object, tuple[str, object]] = {}
    clashes = []
    for name, key, value in _entries():
        if key in seen and seen[key][1] != value:
            clashes.append(f"{key!r}: {seen[key][0]} and {name} disagree")
        seen.setdefault(key, (name, value))
    assert not clashes, "\n".join(clashes)


def test_catalogues_hold_no_text_the_code_no_longer_has() -> None:
    in_code = {text.msgid for text in extract_texts()}
    stale = [f"{name}: {key!r}" for name, key, _value in _entries() if key not in in_code]
    assert not stale, "entries no code uses any more (delete them):\n" + "\n".join(stale)


def test_translated_calls_take_literals_the_extractor_can_see() -> None:
    """``_(f"...")`` or ``_("a" + b)`` would never be found in a catalogue: only literals and named constants."""
    bad = []
    for package in SOURCE_PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                        and node.func.id in {"_", "N_", "gettext", "ngettext"} and node.args):
                    continue
                count = 2 if node.func.id == "ngettext" else 1
                for arg in node.args[:count]:
                    if isinstance(arg, ast.JoinedStr | ast.BinOp | ast.Call):
                        bad.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not bad, "translate literals with named {placeholders} and .format(), not built strings:\n" + "\n".join(bad)


def test_language_follows_the_request_and_falls_back_to_the_default(tmp_path: Path) -> None:
    po_dir = tmp_path / CHINESE / "LC_MESSAGES"
    po_dir.mkdir(parents=True)
    (po_dir / "t.po").write_text(
        'msgid ""\nmsgstr ""\n"Plural-Forms: nplurals=1; plural=0;\\n"\n\n'
        'msgid "Lab {name} is ready"\nmsgstr "实验环境 {name} 已就绪"\n\n'
        'msgid "{n} lab"\nmsgid_plural "{n} labs"\nmsgstr[0] "{n} 个实验环境"\n',
        encoding="utf-8",
    )
    book = i18n.load_catalog(CHINESE, tmp_path)
    assert book.messages == {"Lab {name} is ready": "实验环境 {name} 已就绪"}
    assert book.plurals[("{n} lab", "{n} labs")] == ("{n} 个实验环境",)

    assert i18n.normalize_language("zh-CN") == CHINESE
    assert i18n.normalize_language("en-US") == ENGLISH
    assert i18n.normalize_language("fr-FR") is None
    with pytest.raises(ValueError, match="unsupported language"):
        i18n.set_default_language("fr")

    assert i18n.current_language() == ENGLISH
    with i18n.use_language("zh-CN"):
        assert i18n.current_language() == CHINESE
        with i18n.use_language("fr-FR"):  # a locale labbot has no catalogue for: the default
            assert i18n.current_language() == ENGLISH
    assert i18n.current_language() == ENGLISH
    i18n.set_default_language(CHINESE)
    assert i18n.current_language() == CHINESE


def test_a_missing_translation_is_remembered_and_shown_in_english() -> None:
    with i18n.use_language(CHINESE):
        assert i18n.translate("a text no catalogue has, 9f1c") == "a text no catalogue has, 9f1c"
    assert "a text no catalogue has, 9f1c" in i18n.missing_translations()
    i18n.forget_missing()
    with i18n.use_language(ENGLISH):
        assert i18n.translate("another text no catalogue has") == "another text no catalogue has"
    assert i18n.missing_translations() == []
