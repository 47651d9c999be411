"""Translations: every text a person reads goes through ``_`` and the gettext catalogues under ``config/locale``.

The language is chosen per request, not per process: the Slack middleware and the console set it from the user
(Slack tells a user's locale through ``users.info``), and everything else — channel cards, scheduled notices,
the CLI — uses the default, ``LABBOT_LANGUAGE`` (``en`` or ``zh_CN``). A ContextVar carries the choice, so a
service that raises an error inside a request raises it in that user's language without taking a parameter.

How to write a translatable text:
- ``_("Lab {name} is ready").format(name=name)``: the msgid is a plain literal (never an f-string: the catalogue
  could not find it) with named ``{placeholders}`` a translator can move around;
- ``ngettext("{n} lab", "{n} labs", n).format(n=n)`` for counts;
- ``N_("...")`` marks a module-level constant for extraction without translating it at import time (the language
  is not known yet); translate it where it is shown with ``_(CONSTANT)``.

The catalogues are ordinary gettext ``.po`` files read with Babel, one file per area of the code under
``config/locale/<language>/LC_MESSAGES/`` (merged into one catalogue at load), so people working on different parts
do not edit the same file. English is the source language and has no catalogue. ``labbot i18n missing`` lists the
texts of the code that a catalogue lacks, as ``.po`` entries ready to translate; tests/foundation/test_i18n.py fails
on any of them.

The course's own terms, used the same way everywhere (as ZStack's Chinese UI and the course notes say them):
lab 实验环境, jump host 跳板机, management node 管理节点, primary storage 主存储,
backup storage 镜像服务器, SharedBlock 共享块存储, nested virtualization 嵌套虚拟化,
nested VM 嵌套云主机, VM 云主机, host 物理机, zone 区域, cluster 集群, L2/L3 network 二层/三层网络,
data volume 数据云盘, root volume 根云盘, image 镜像, instance offering 计算规格,
iSCSI target iSCSI 目标, initiator 启动器, portal 门户, trainer 讲师, student 学员, class 班级,
warm pool 预热池, expire 到期, extend 续期, destroy 销毁, retry 重试, owner 所有者, admin 管理员,
health 健康状态, step 步骤, build 构建.
"""

from __future__ import annotations

import gettext as _gettext
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path

ENGLISH = "en"
CHINESE = "zh_CN"
LANGUAGES = (ENGLISH, CHINESE)
LOCALE_DIR = Path(__file__).resolve().parent.parent / "config" / "locale"
# How many distinct missing msgids are remembered for the tests and `labbot i18n`: a bound, not a feature.
_MAX_MISSING = 2000

_default_language = ENGLISH
_current: ContextVar[str | None] = ContextVar("labbot_language", default=None)


def normalize_language(tag: str | None) -> str | None:
    """``zh-CN``, ``zh_CN``, ``zh-Hans``, ``zh`` → ``zh_CN``; ``en``, ``en-US``, ``en_GB`` → ``en``; else None."""
    if not tag:
        return None
    base = tag.strip().replace("-", "_").lower()
    if base == "zh" or base.startswith(("zh_cn", "zh_hans", "zh_sg")):
        return CHINESE
    if base == "en" or base.startswith("en_"):
        return ENGLISH
    return None


def set_default_language(language: str) -> None:
    """The language of everything not said to one person (channel cards, scheduled notices, the CLI)."""
    global _default_language
    normalized = normalize_language(language)
    if normalized is None:
        raise ValueError(f"unsupported language {language!r}: choose one of {', '.join(LANGUAGES)}")
    _default_language = normalized


def default_language() -> str:
    return _default_language


def current_language() -> str:
    """The language of the text being made now: the request's, else the default."""
    return _current.get() or _default_language


@contextmanager
def use_language(language: str | None) -> Iterator[str]:
    """Make texts in ``language`` inside the block (None or an unknown tag: the default). Yields the one chosen."""
    chosen = normalize_language(language) or _default_language
    token = _current.set(chosen)
    try:
        yield chosen
    finally:
        _current.reset(token)


def set_request_language(language: str | None) -> None:
    """Choose the language for the rest of the current task (and tasks it starts): the Slack middleware's call."""
    _current.set(normalize_language(language) or _default_language)


@dataclass
class Catalog:
    """One language's translations, merged from every ``.po`` file of that language."""

    language: str
    messages: dict[str, str] = field(default_factory=dict)
    plurals: dict[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)
    plural_index: object = None  # a callable n -> index, from the catalogue's Plural-Forms

    def index(self, n: int) -> int:
        return int(self.plural_index(n)) if callable(self.plural_index) else (0 if n == 1 else 1)


_catalogs: dict[str, Catalog] = {}
_catalog_lock = threading.Lock()
_missing: set[str] = set()


def load_catalog(language: str, locale_dir: Path = LOCALE_DIR) -> Catalog:
    """Read every ``.po`` file of ``language`` (fuzzy and empty entries do not count as translated)."""
    from babel.messages.pofile import read_po  # imported here: only languages with a catalogue need Babel

    catalog = Catalog(language)
    for path in sorted((locale_dir / language / "LC_MESSAGES").glob("*.po")):
        with path.open("rb") as handle:
            po = read_po(handle, locale=language)
        if catalog.plural_index is None and po.plural_expr:
            catalog.plural_index = _gettext.c2py(po.plural_expr)
        for message in po:
            if not message.id or message.fuzzy:
                continue
            if isinstance(message.id, (list, tuple)):
                forms = tuple(message.string or ())
                if forms and all(forms):
                    catalog.plurals[(message.id[0], message.id[1])] = forms
            elif message.string:
                catalog.messages[message.id] = message.string
    return catalog


def catalog(language: str) -> Catalog:
    with _catalog_lock:
        if language not in _catalogs:
            _catalogs[language] = load_catalog(language)
        return _catalogs[language]


def reload_catalogs() -> None:
    """Forget loaded catalogues (tests that edit them; a long-running bot never needs it)."""
    with _catalog_lock:
        _catalogs.clear()


def _note_missing(msgid: str) -> None:
    if len(_missing) < _MAX_MISSING:
        _missing.add(msgid)


def missing_translations() -> list[str]:
    """Msgids asked for in a non-English language that its catalogue lacks, since the last ``forget_missing``."""
    return sorted(_missing)


def forget_missing() -> None:
    _missing.clear()


def translate(msgid: str, language: str | None = None) -> str:
    """``msgid`` in ``language`` (default: the current one); the English text when no translation exists."""
    language = language or current_language()
    if language == ENGLISH or not msgid:
        return msgid
    text = catalog(language).messages.get(msgid)
    if text is None:
        _note_missing(msgid)
        return msgid
    return text


def gettext(msgid: str) -> str:
    return translate(msgid)


_ = gettext


def ngettext(singular: str, plural: str, n: int) -> str:
    """The form of ``singular``/``plural`` that fits ``n`` in the current language."""
    language = current_language()
    if language == ENGLISH:
        return singular if n == 1 else plural
    book = catalog(language)
    forms = book.plurals.get((singular, plural))
    if forms is None:
        _note_missing(singular)
        return singular if n == 1 else plural
    return forms[min(book.index(n), len(forms) - 1)]


def N_(msgid: str) -> str:
    """Mark ``msgid`` for the catalogue without translating it now (module-level constants)."""
    return msgid


class Texts(Mapping[str, str]):
    """A module's table of texts (values marked with ``N_``), each read back in the current language.

    ``TEXT["title"].format(lab=name)`` then needs no ``_()`` at each use, and ``.get(key, default)`` translates too.
    """

    def __init__(self, texts: Mapping[str, str]) -> None:
        self._texts = dict(texts)

    def __getitem__(self, key: str) -> str:
        return translate(self._texts[key])

    def __iter__(self) -> Iterator[str]:
        return iter(self._texts)

    def __len__(self) -> int:
        return len(self._texts)

    def msgids(self) -> dict[str, str]:
        """The English texts, untranslated."""
        return dict(self._texts)
