"""OMOP CDM 5.4 tables (a folder of CSV or Parquet) -> screening tables, set-wise in DuckDB.

No row is looked at in Python: each clinical table is read by DuckDB, its codes resolved
by joins, and each screening table written with one ``COPY ... TO parquet``.

Codes. A row's coding is its ``*_concept_id`` (then ``*_source_concept_id``) looked up in
``concept`` (vocabulary_id through screening.yaml ``omop_vocabularies``, concept_code)
when the folder has a concept table and lists the id, else its ``*_source_value`` taken
as a bare code. Only the distinct codings are resolved (a few hundred however many rows)
against the knowledge base's code table (``lookups.code_table``): exact codes, and for
ICD-10 and ATC the longest listed code the code starts with (``CodeIndex.lookup`` walks
up the hierarchy the same way); a bare source value is matched in any code system.

Tables, as the FHIR loader maps the same facts (``load_fhir``):

- person: birth date from birth_datetime, else year/month/day_of_birth (a missing month
  or day is taken as the latest possible, so nobody is screened before min_age); sex from
  gender_concept_id (screening.yaml ``omop_gender``); death_date from ``death`` if present;
  care_site from care_site_id, named by ``care_site`` when it has the row.
- drug_exposure: a B12 medicine given by a maintenance route (screening.yaml
  ``maintenance.routes``: route_concept_id's code, else route_source_value's word,
  ``lookups.route_table``) is a dose (b12_dose, with the B12 named by fhir.yaml
  ``b12_drugs``); every other medicine of the knowledge base is a course (medication)
  from the start date to drug_exposure_end_date, else start + days_supply - 1 (OMOP's
  convention), else the start date (a single exposure). Codes the knowledge base keeps as
  exposures (nitrous oxide given as an anaesthetic) are not medicines here.
- condition_occurrence: diagnoses -> condition (end_date from condition_end_date, none
  for the lasting ones of fhir.yaml ``lasting_conditions``); symptoms, diets and exposures
  -> finding on the start date. procedure_occurrence: operations -> condition, lasting.
  observation: symptoms, diets and exposures -> finding.
- measurement: numeric tests -> value_as_number in SI through ``lookups.unit_table``
  (unit_source_value, else unit_concept_id's code; a result in no unit of its test is
  left out, as the FHIR import leaves it); qualitative tests -> positive or negative from
  value_as_concept_id (fhir.yaml ``positive``/``negative``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from b12dx.errors import B12dxError, FieldError, InputError
from b12dx.knowledge.loader import Knowledge
from b12dx.screen.cdm_database import CdmDatabase, SparkCatalog, scrub
from b12dx.screen.lookups import code_table, route_table, unit_table
from b12dx.screen.model import SCHEMAS, ScreeningTables
from b12dx.screen.omop_sources import (
    CODED,
    Catalog,
    Database,
    Folder,
    Reader,
)
from b12dx.screen.sql_engines import DuckDbSql, SparkSql, SqlEngine
from b12dx.screen.sql_engines import quoted as _q


@dataclass(frozen=True)
class _Source:
    """One OMOP table: the columns read (required ones first) and their SQL types."""

    required: tuple[tuple[str, str], ...]
    optional: tuple[tuple[str, str], ...] = ()


_ID, _INT, _NUM, _TEXT, _DATE, _TS = "BIGINT", "INTEGER", "DOUBLE", "VARCHAR", "DATE", "TIMESTAMP"

# Required: what the CDM 5.4 marks required and the mapping cannot do without.
SOURCES: dict[str, _Source] = {
    "person": _Source(
        (("person_id", _ID), ("gender_concept_id", _ID), ("year_of_birth", _INT)),
        (
            ("month_of_birth", _INT),
            ("day_of_birth", _INT),
            ("birth_datetime", _TS),
            ("care_site_id", _ID),
        ),
    ),
    "drug_exposure": _Source(
        (("person_id", _ID), ("drug_concept_id", _ID), ("drug_exposure_start_date", _DATE)),
        (
            ("drug_exposure_end_date", _DATE),
            ("days_supply", _INT),
            ("route_concept_id", _ID),
            ("route_source_value", _TEXT),
            ("drug_source_value", _TEXT),
            ("drug_source_concept_id", _ID),
            ("drug_type_concept_id", _ID),
        ),
    ),
    "measurement": _Source(
        (("person_id", _ID), ("measurement_concept_id", _ID), ("measurement_date", _DATE)),
        (
            ("value_as_number", _NUM),
            ("value_as_concept_id", _ID),
            ("unit_concept_id", _ID),
            ("unit_source_value", _TEXT),
            ("measurement_source_value", _TEXT),
            ("measurement_source_concept_id", _ID),
            ("measurement_type_concept_id", _ID),
        ),
    ),
    "condition_occurrence": _Source(
        (
            ("person_id", _ID),
            ("condition_concept_id", _ID),
            ("condition_start_date", _DATE),
        ),
        (
            ("condition_end_date", _DATE),
            ("condition_source_value", _TEXT),
            ("condition_source_concept_id", _ID),
        ),
    ),
    "procedure_occurrence": _Source(
        (("person_id", _ID), ("procedure_concept_id", _ID), ("procedure_date", _DATE)),
        (("procedure_source_value", _TEXT), ("procedure_source_concept_id", _ID)),
    ),
    "observation": _Source(
        (("person_id", _ID), ("observation_concept_id", _ID), ("observation_date", _DATE)),
        (("observation_source_value", _TEXT), ("observation_source_concept_id", _ID)),
    ),
}
OPTIONAL_SOURCES: dict[str, _Source] = {
    "concept": _Source(
        (("concept_id", _ID), ("vocabulary_id", _TEXT), ("concept_code", _TEXT)),
        (("standard_concept", _TEXT), ("invalid_reason", _TEXT)),
    ),
    "concept_relationship": _Source(
        (("concept_id_1", _ID), ("concept_id_2", _ID), ("relationship_id", _TEXT)),
        (("invalid_reason", _TEXT),),
    ),
    "concept_ancestor": _Source(
        (("ancestor_concept_id", _ID), ("descendant_concept_id", _ID)),
        (("min_levels_of_separation", _INT),),
    ),
    "death": _Source((("person_id", _ID), ("death_date", _DATE))),
    "care_site": _Source((("care_site_id", _ID),), (("care_site_name", _TEXT),)),
    "observation_period": _Source(
        (
            ("person_id", _ID),
            ("observation_period_start_date", _DATE),
            ("observation_period_end_date", _DATE),
        ),
    ),
}
# How OHDSI tools reach the concept a record means from the one it names: a
# non-standard or replaced concept "Maps to" a standard one ("Concept replaced by" for a
# code retired in a later vocabulary); a product descends from its ingredient and its
# ATC class (concept_ancestor).
MAPPING_RELATIONSHIPS = ("Maps to", "Concept replaced by")
FINDING_KINDS = ("symptom", "diet", "exposure", "pregnancy")


def _view(sql: SqlEngine, table: str, source: Reader, spec: _Source) -> None:
    """A view ``src_<table>`` of the columns the mapping reads, typed; a missing optional
    column is null."""
    reader, cast = source.sql, source.cast
    try:
        present = sql.columns(reader)
    except Exception as exc:  # each engine's own error for a table it cannot read
        said = scrub(str(exc), source.url) if source.url else str(exc)
        raise InputError.single(source.label, f"cannot be read: {said}") from None
    missing = [name for name, _ in spec.required if name not in present]
    if missing:
        raise InputError(
            [
                FieldError(source.label, f"has no column {name}", f"OMOP CDM 5.4 {table} columns")
                for name in missing
            ]
        )
    columns = [
        f"{cast}({name} AS {typ}) AS {name}" if name in present else f"NULL::{typ} AS {name}"
        for name, typ in (*spec.required, *spec.optional)
    ]
    sql.view(f"src_{table}", f"SELECT {', '.join(columns)} FROM {reader}")


def _lookups(sql: SqlEngine, kb: Knowledge, has_concept: bool) -> None:
    codes = code_table(kb)
    vocab = pa.table(
        {
            "vocabulary_id": list(kb.screening.omop_vocabularies),
            "system": list(kb.screening.omop_vocabularies.values()),
        }
    )
    genders = pa.table(
        {
            "gender_concept_id": pa.array(list(kb.screening.omop_gender), pa.int64()),
            "sex": list(kb.screening.omop_gender.values()),
        }
    )
    b12_drugs = pa.Table.from_pylist(
        [
            {"system": c.system, "code": c.code, "drug": drug}
            for drug, cs in kb.fhir.b12_drugs.items()
            for c in cs
        ]
    )
    qualitative = pa.Table.from_pylist(
        [
            {"system": c.system, "code": c.code, "value_text": text}
            for text, cs in (("positive", kb.fhir.positive), ("negative", kb.fhir.negative))
            for c in cs
        ]
    )
    tests = pa.table({"test": list(kb.labs), "kind": [t.kind for t in kb.labs.values()]})
    lasting = pa.table({"condition_id": pa.array(kb.fhir.lasting_conditions, pa.string())})
    for name, table in {
        "kb_codes": codes,
        "kb_vocab": vocab,
        "kb_gender": genders,
        "kb_units": unit_table(kb),
        "kb_routes": route_table(kb),
        "kb_b12_drugs": b12_drugs,
        "kb_qualitative": qualitative,
        "kb_tests": tests,
        "kb_lasting": lasting,
    }.items():
        sql.register(name, table)
    # concept_id -> (system, code) of the vocabularies b12dx reads; ``valid`` unless the
    # vocabulary retired it (invalid_reason D or U).
    if has_concept:
        sql.keep(
            "omop_code",
            """SELECT c.concept_id, v.system, trim(c.concept_code) AS code,
                   coalesce(trim(c.invalid_reason), '') = '' AS valid
            FROM src_concept c JOIN kb_vocab v USING (vocabulary_id)
            WHERE c.concept_id IS NOT NULL AND c.concept_code IS NOT NULL""",
        )
    else:
        sql.keep(
            "omop_code",
            "SELECT CAST(NULL AS BIGINT) AS concept_id, CAST(NULL AS VARCHAR) AS system, "
            "CAST(NULL AS VARCHAR) AS code, CAST(NULL AS BOOLEAN) AS valid WHERE FALSE",
        )
    # The concepts the records name, and where each leads (MAPPING_RELATIONSHIPS, then
    # its ancestors, nearest first): ``hop`` 1 for a mapping, 1 + levels for an ancestor.
    # Only concepts the records use are followed, so a full vocabulary's hundreds of
    # millions of ancestor rows are read once and mostly skipped.
    used = " UNION ".join(
        f"SELECT {concept}_concept_id AS id FROM src_{table} "
        f"UNION SELECT {source}_source_concept_id FROM src_{table}"
        for table, concept, source in CODED
    )
    relationships = ", ".join(_q(r) for r in MAPPING_RELATIONSHIPS)
    sql.keep("omop_used", f"SELECT DISTINCT id FROM ({used}) WHERE id IS NOT NULL")
    sql.keep(
        "omop_link",
        f"""SELECT r.concept_id_1 AS concept_id, r.concept_id_2 AS target, 1 AS hop
        FROM src_concept_relationship r SEMI JOIN omop_used u ON u.id = r.concept_id_1
        WHERE r.relationship_id IN ({relationships})
          AND coalesce(trim(r.invalid_reason), '') = ''
          AND r.concept_id_1 <> r.concept_id_2
        UNION ALL
        SELECT a.descendant_concept_id, a.ancestor_concept_id,
               1 + coalesce(a.min_levels_of_separation, 1)
        FROM src_concept_ancestor a SEMI JOIN omop_used u ON u.id = a.descendant_concept_id
        WHERE a.descendant_concept_id <> a.ancestor_concept_id""",
    )


def _resolve(sql: SqlEngine, table: str, concept: str, source: str) -> None:
    """``res_<table>``: each distinct (concept id, source concept id, source value) of the
    table -> (system, code, kind, id), the concept ids before the source value."""
    sql.keep(
        f"res_{table}",
        f"""WITH keys AS (
            SELECT DISTINCT {concept}_concept_id AS cid, {source}_source_concept_id AS sid,
                   {source}_source_value AS sv
            FROM src_{table}
        ), named AS (
            -- the concept itself (a retired one after what replaces it), then where it
            -- maps or descends from; the record's concept before its source concept
            SELECT keys.*, c.system, c.code, IF(c.valid, 1, 3) AS tier, 0 AS hop
            FROM keys JOIN omop_code c ON c.concept_id = keys.cid
            UNION ALL
            SELECT keys.*, c.system, c.code, 2 AS tier, l.hop FROM keys
            JOIN omop_link l ON l.concept_id = keys.cid JOIN omop_code c ON c.concept_id = l.target
            UNION ALL
            SELECT keys.*, c.system, c.code, IF(c.valid, 4, 6) AS tier, 0 AS hop
            FROM keys JOIN omop_code c ON c.concept_id = keys.sid
            UNION ALL
            SELECT keys.*, c.system, c.code, 5 AS tier, l.hop FROM keys
            JOIN omop_link l ON l.concept_id = keys.sid JOIN omop_code c ON c.concept_id = l.target
        ), candidates AS (
            SELECT * FROM named
            UNION ALL
            SELECT keys.*, NULL AS system, trim(keys.sv) AS code, 7 AS tier, 0 AS hop FROM keys
            WHERE keys.sv IS NOT NULL AND trim(keys.sv) <> ''
        ), matched AS (
            SELECT cand.cid, cand.sid, cand.sv, k.system, cand.code, k.kind, k.id,
                   -- the best code; a combination code's rows (one per condition it
                   -- records) tie, and all are kept
                   rank() OVER (
                       PARTITION BY cand.cid, cand.sid, cand.sv
                       ORDER BY cand.tier, cand.hop, length(k.code) DESC, k.system, k.kind,
                                k.code
                   ) AS pick
            FROM candidates cand JOIN kb_codes k
              ON (cand.system IS NULL OR k.system = cand.system) AND (
                 (NOT k.hierarchical AND k.code = cand.code)
                 OR (k.hierarchical AND length(k.code) >= 3
                     AND starts_with(rtrim(upper(cand.code), '.'), k.code)))
        )
        SELECT cid, sid, sv, system, code, kind, id FROM matched WHERE pick = 1""",
    )


def _coded(table: str, concept: str, source: str) -> str:
    """SQL: the table's rows with their resolved meaning (rows b12dx has no use for are
    dropped by the inner join)."""
    return f"""src_{table} t JOIN res_{table} r
        ON r.cid IS NOT DISTINCT FROM t.{concept}_concept_id
        AND r.sid IS NOT DISTINCT FROM t.{source}_source_concept_id
        AND r.sv IS NOT DISTINCT FROM t.{source}_source_value"""


def _copy(sql: SqlEngine, name: str, select: str, work: Path) -> None:
    schema = SCHEMAS[name]
    types = {
        pa.string(): "VARCHAR",
        pa.date32(): "DATE",
        pa.float64(): "DOUBLE",
    }
    cols = ", ".join(f"CAST({f.name} AS {types[f.type]}) AS {f.name}" for f in schema)
    sql.write(f"SELECT {cols} FROM ({select}) AS screened", work / f"{name}.parquet")


def _sql(kb: Knowledge, type_concepts: tuple[int, ...] = ()) -> dict[str, str]:
    """The SQL of each screening table. ``type_concepts``: keep only drug exposures and
    measurements of these provenances (``*_type_concept_id``, e.g. 32817 EHR), for data
    that mix claims with EHR records; empty keeps all."""
    listed = ", ".join(str(int(c)) for c in type_concepts)
    drug_kept = f"AND t.drug_type_concept_id IN ({listed})" if listed else ""
    meas_kept = f"AND t.measurement_type_concept_id IN ({listed})" if listed else ""
    routes = ", ".join(_q(r) for r in kb.screening.maintenance.routes)
    findings = ", ".join(_q(k) for k in FINDING_KINDS)
    drugs = _coded("drug_exposure", "drug", "drug")
    cond = _coded("condition_occurrence", "condition", "condition")
    proc = _coded("procedure_occurrence", "procedure", "procedure")
    obs = _coded("observation", "observation", "observation")
    meas = _coded("measurement", "measurement", "measurement")
    unit = "coalesce(nullif(trim(t.unit_source_value), ''), uc.code)"
    unit_key = f"lower(replace(replace(replace({unit}, 'µ', 'u'), 'μ', 'u'), ' ', ''))"
    dose_or_course = f"""
        SELECT t.person_id, r.id AS medication_id, r.system, r.code,
               t.drug_exposure_start_date AS start_date,
               coalesce(t.drug_exposure_end_date,
                        t.drug_exposure_start_date + (t.days_supply - 1),
                        t.drug_exposure_start_date) AS end_date,
               coalesce(rc.route, rw.route) AS route
        FROM {drugs}
        LEFT JOIN omop_code oc ON oc.concept_id = t.route_concept_id
        LEFT JOIN kb_routes rc ON rc.key = oc.code
        LEFT JOIN kb_routes rw ON rw.key = lower(trim(t.route_source_value))
        WHERE r.kind = 'medication' {drug_kept}"""
    return {
        "person": """
            SELECT CAST(p.person_id AS VARCHAR) AS person_id,
                   coalesce(CAST(p.birth_datetime AS DATE),
                            CASE WHEN p.day_of_birth IS NULL
                                 THEN last_day(make_date(p.year_of_birth,
                                                         coalesce(p.month_of_birth, 12), 1))
                                 ELSE make_date(p.year_of_birth,
                                                coalesce(p.month_of_birth, 12),
                                                p.day_of_birth) END) AS birth_date,
                   g.sex, d.death_date,
                   CASE WHEN p.care_site_id IS NOT NULL
                        THEN coalesce(nullif(trim(cs.care_site_name), ''),
                                      'care site ' || CAST(p.care_site_id AS VARCHAR))
                        END AS care_site
            FROM src_person p
            LEFT JOIN kb_gender g ON g.gender_concept_id = p.gender_concept_id
            LEFT JOIN (SELECT care_site_id, min(care_site_name) AS care_site_name
                       FROM src_care_site GROUP BY care_site_id) cs
                   ON cs.care_site_id = p.care_site_id
            LEFT JOIN (SELECT person_id, min(death_date) AS death_date FROM src_death
                       GROUP BY person_id) d ON d.person_id = p.person_id""",
        "drugs": dose_or_course,
        "b12_dose": f"""
            SELECT CAST(x.person_id AS VARCHAR) AS person_id, x.start_date AS date, x.route,
                   bd.drug
            FROM drugs x
            LEFT JOIN kb_b12_drugs bd ON bd.system = x.system AND bd.code = x.code
            WHERE x.medication_id = 'b12_supplement' AND x.route IN ({routes})""",
        "medication": f"""
            SELECT CAST(person_id AS VARCHAR) AS person_id, medication_id, start_date,
                   end_date
            FROM drugs
            WHERE NOT (medication_id = 'b12_supplement' AND coalesce(route IN ({routes}),
                                                                       FALSE))""",
        "condition": f"""
            SELECT CAST(t.person_id AS VARCHAR) AS person_id, r.id AS condition_id,
                   t.condition_start_date AS start_date,
                   CASE WHEN l.condition_id IS NULL THEN t.condition_end_date END AS end_date
            FROM {cond} LEFT JOIN kb_lasting l ON l.condition_id = r.id
            WHERE r.kind = 'condition'
            UNION ALL
            SELECT CAST(t.person_id AS VARCHAR), r.id, t.procedure_date, NULL
            FROM {proc} WHERE r.kind = 'condition'""",
        "finding": f"""
            SELECT CAST(t.person_id AS VARCHAR) AS person_id, r.kind, r.id,
                   t.condition_start_date AS date
            FROM {cond} WHERE r.kind IN ({findings})
            UNION ALL
            SELECT CAST(t.person_id AS VARCHAR), r.kind, r.id, t.observation_date
            FROM {obs} WHERE r.kind IN ({findings})
            UNION ALL
            SELECT CAST(t.person_id AS VARCHAR), r.kind, r.id, t.measurement_date
            FROM {meas} WHERE r.kind IN ({findings}) {meas_kept}""",
        "lab": f"""
            SELECT CAST(t.person_id AS VARCHAR) AS person_id, r.id AS test,
                   t.value_as_number * u.factor AS value_si, NULL AS value_text,
                   u.family AS unit_family, t.measurement_date AS date
            FROM {meas}
            JOIN kb_tests kt ON kt.test = r.id AND kt.kind = 'numeric'
            LEFT JOIN omop_code uc ON uc.concept_id = t.unit_concept_id
            JOIN kb_units u ON u.test = r.id AND u.unit_key = {unit_key}
            WHERE r.kind = 'lab' AND t.value_as_number IS NOT NULL {meas_kept}
            UNION ALL
            SELECT CAST(t.person_id AS VARCHAR), r.id, NULL, q.value_text, NULL,
                   t.measurement_date
            FROM {meas}
            JOIN kb_tests kt ON kt.test = r.id AND kt.kind = 'qualitative'
            JOIN omop_code vc ON vc.concept_id = t.value_as_concept_id
            JOIN kb_qualitative q ON q.system = vc.system AND q.code = vc.code
            WHERE r.kind = 'lab' {meas_kept}""",
        "observation_period": """
            SELECT CAST(person_id AS VARCHAR) AS person_id,
                   observation_period_start_date AS start_date,
                   observation_period_end_date AS end_date
            FROM src_observation_period
            WHERE observation_period_start_date IS NOT NULL""",
    }


def _map(
    sql: SqlEngine,
    tables: Folder | Database | Catalog,
    kb: Knowledge,
    work: Path,
    type_concepts: tuple[int, ...],
) -> ScreeningTables:
    """The mapping itself, on any engine: the source views, the lookups, each coded
    table's meanings, then each screening table written to ``work``."""
    missing = [name for name in SOURCES if tables.find(name) is None]
    if missing:
        raise InputError([tables.missing(name) for name in missing])
    work.mkdir(parents=True, exist_ok=True)
    for name, spec in SOURCES.items():
        found = tables.find(name)
        assert found is not None
        _view(sql, name, found, spec)
    present = {}
    for name, spec in OPTIONAL_SOURCES.items():
        found = tables.find(name)
        present[name] = found is not None
        if found is not None:
            _view(sql, name, found, spec)
        else:
            cols = ", ".join(
                f"CAST(NULL AS {typ}) AS {col}" for col, typ in (*spec.required, *spec.optional)
            )
            sql.view(f"src_{name}", f"SELECT {cols} WHERE FALSE")
    _lookups(sql, kb, present["concept"])
    for table, concept, src in CODED:
        _resolve(sql, table, concept, src)
    selects = _sql(kb, type_concepts)
    sql.keep("drugs", selects.pop("drugs"))
    for name, select in selects.items():
        _copy(sql, name, select, work)
    return ScreeningTables(work)


def load_omop(
    kb: Knowledge,
    source: Path | CdmDatabase | SparkCatalog,
    work: Path,
    *,
    threads: int | None = None,
    type_concepts: tuple[int, ...] = (),
    spark: Any = None,
) -> ScreeningTables:
    """Map the OMOP tables in ``source`` (a folder, a CDM in PostgreSQL, or a database of
    the Spark catalog, mapped in ``spark``, its session) into the screening tables in
    ``work`` (``type_concepts``: see ``_sql``)."""
    if isinstance(source, SparkCatalog):
        engine = SparkSql(spark)
        try:
            return _map(engine, Catalog(source, engine), kb, work, type_concepts)
        except B12dxError:
            raise
        except Exception as exc:  # Spark's analysis and execution errors
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise InputError.single(
                source.label, f"the OMOP tables cannot be mapped: {message}"
            ) from exc
        finally:
            engine.close()
    con = duckdb.connect()
    try:
        if threads is not None:
            con.execute(f"SET threads = {int(threads)}")
        con.execute("SET preserve_insertion_order = false")
        tables = Folder(source) if isinstance(source, Path) else Database(source, con)
        return _map(DuckDbSql(con), tables, kb, work, type_concepts)
    except duckdb.Error as exc:
        if isinstance(source, Path):
            label, said = str(source), str(exc)
        else:  # the scanner's messages can hold the connection string
            label, said = source.label, scrub(str(exc), source.url)
        raise InputError.single(label, f"the OMOP tables cannot be mapped: {said}") from None
    finally:
        con.close()
