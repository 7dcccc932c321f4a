"""Charlson comorbidity index from ICD-10(-CM) codes.

Mapping: Quan H. et al., "Coding algorithms for defining comorbidities in
ICD-9-CM and ICD-10 administrative data", Med Care 2005;43(11):1130-9 (the
ICD-10 Charlson algorithm), with the original Charlson (1987) weights, as LACE
(van Walraven 2010) uses them. Hierarchies: complicated diabetes supersedes
uncomplicated, severe liver disease supersedes mild, metastatic tumour
supersedes any malignancy. Codes are compared without the dot, by prefix.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["CHARLSON_CATEGORIES", "charlson_categories", "charlson_index", "normalize_icd10"]


def _range(letter: str, first: int, last: int, width: int = 2) -> list[str]:
    return [f"{letter}{n:0{width}d}" for n in range(first, last + 1)]


def _dm(fourth_digits: str) -> list[str]:
    # E10-E14 (WHO) and E08-E13 (ICD-10-CM) diabetes families.
    return [f"E{fam}{d}" for fam in ("08", "09", "10", "11", "12", "13", "14") for d in fourth_digits]


# category -> (weight, code prefixes)
CHARLSON_CATEGORIES: dict[str, tuple[int, list[str]]] = {
    "myocardial_infarction": (1, ["I21", "I22", "I252"]),
    "congestive_heart_failure": (1, ["I099", "I110", "I130", "I132", "I255", "I420", "I425", "I426", "I427",
                                     "I428", "I429", "I43", "I50", "P290"]),
    "peripheral_vascular": (1, ["I70", "I71", "I731", "I738", "I739", "I771", "I790", "I792", "K551", "K558",
                                "K559", "Z958", "Z959"]),
    "cerebrovascular": (1, ["G45", "G46", "H340", *_range("I", 60, 69)]),
    "dementia": (1, ["F00", "F01", "F02", "F03", "F051", "G30", "G311"]),
    "chronic_pulmonary": (1, ["I278", "I279", *_range("J", 40, 47), *_range("J", 60, 67), "J684", "J701",
                              "J703"]),
    "rheumatic": (1, ["M05", "M06", "M315", "M32", "M33", "M34", "M351", "M353", "M360"]),
    "peptic_ulcer": (1, ["K25", "K26", "K27", "K28"]),
    "mild_liver": (1, ["B18", "K700", "K701", "K702", "K703", "K709", "K713", "K714", "K715", "K717", "K73",
                       "K74", "K760", "K762", "K763", "K764", "K768", "K769", "Z944"]),
    "diabetes_uncomplicated": (1, _dm("01689")),
    "diabetes_complicated": (2, _dm("2345" "7")),
    "hemiplegia_paraplegia": (2, ["G041", "G114", "G801", "G802", "G81", "G82", "G830", "G831", "G832",
                                  "G833", "G834", "G839"]),
    "renal": (2, ["I120", "I131", "N032", "N033", "N034", "N035", "N036", "N037", "N052", "N053", "N054",
                  "N055", "N056", "N057", "N18", "N19", "N250", "Z490", "Z491", "Z492", "Z940", "Z992"]),
    "malignancy": (2, [*_range("C", 0, 26), *_range("C", 30, 34), *_range("C", 37, 41), "C43",
                       *_range("C", 45, 58), *_range("C", 60, 76), *_range("C", 81, 85), "C88",
                       *_range("C", 90, 97)]),
    "severe_liver": (3, ["I850", "I859", "I864", "I982", "K704", "K711", "K721", "K729", "K765", "K766",
                         "K767"]),
    "metastatic_solid_tumour": (6, ["C77", "C78", "C79", "C80"]),
    "hiv_aids": (6, ["B20", "B21", "B22", "B24"]),
}

_SUPERSEDED_BY = {
    "diabetes_uncomplicated": "diabetes_complicated",
    "mild_liver": "severe_liver",
    "malignancy": "metastatic_solid_tumour",
}


def normalize_icd10(code: str) -> str:
    return code.replace(".", "").strip().upper()


def charlson_categories(codes: Iterable[str]) -> set[str]:
    """Charlson categories present in the codes, after the hierarchy rules."""
    found: set[str] = set()
    normalized = [normalize_icd10(c) for c in codes]
    for category, (_, prefixes) in CHARLSON_CATEGORIES.items():
        if any(code.startswith(p) for code in normalized for p in prefixes):
            found.add(category)
    for lesser, greater in _SUPERSEDED_BY.items():
        if greater in found:
            found.discard(lesser)
    return found


def charlson_index(codes: Iterable[str]) -> int:
    """Weighted Charlson comorbidity index (original weights)."""
    return sum(CHARLSON_CATEGORIES[c][0] for c in charlson_categories(codes))
