"""``update_all_translations``: copy translation records onto the translatable objects.

Every product, plan and step keeps ``translations = {language: {field: text}}`` so pages
render without a join. Updating one language replaces that language only (texts
deleted from the records disappear); updating all rebuilds every language.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from schema.catalog import Plan, Product, Step, Translation
from schema.engine import Database

logger = logging.getLogger(__name__)

TRANSLATABLE: dict[str, tuple[type[Any], frozenset[str]]] = {
    "product": (Product, frozenset({"title", "description"})),
    "plan": (Plan, frozenset({"title", "description"})),
    "step": (Step, frozenset({"name", "description"})),
}


@dataclass
class TranslationReport:
    objects_updated: int = 0
    texts: int = 0
    ignored: int = 0  # records naming an unknown model, field or object


def update_all_translations(db: Database, language: str | None = None) -> TranslationReport:
    report = TranslationReport()
    with db.session() as session:
        query = select(Translation)
        if language is not None:
            query = query.where(Translation.language == language)
        found: dict[tuple[str, int], dict[str, dict[str, str]]] = defaultdict(dict)
        for record in session.scalars(query):
            spec = TRANSLATABLE.get(record.model)
            if spec is None or record.field not in spec[1]:
                report.ignored += 1
                continue
            found[(record.model, record.object_id)].setdefault(record.language, {})[
                record.field
            ] = record.text
            report.texts += 1
        for model_name, (model, _fields) in TRANSLATABLE.items():
            for obj in session.scalars(select(model)):
                texts = found.pop((model_name, obj.id), {})
                current: dict[str, Any] = dict(obj.translations or {})
                if language is None:
                    updated: dict[str, Any] = texts
                else:
                    updated = {k: v for k, v in current.items() if k != language}
                    if language in texts:
                        updated[language] = texts[language]
                if updated != current:
                    obj.translations = updated
                    report.objects_updated += 1
        missing = sum(len(f) for t in found.values() for f in t.values())  # no such object
        report.ignored += missing
        report.texts -= missing
    logger.info(
        "translations%s: %d objects updated from %d texts (%d ignored)",
        f" for {language}" if language else "",
        report.objects_updated,
        report.texts,
        report.ignored,
    )
    return report
