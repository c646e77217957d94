"""The report's content, organised by the protocol's research questions (HTML and Word alike).

One :class:`Document` is built from the publication (suppressed) tables and charts: a summary,
a caveats section computed from the data, one section per research question (1a-2c, in the
protocol's words) with its key findings (:mod:`tasks.analysis.findings`), charts, tables and
what the data cannot say. Tables are looked up by name: a table this analysis does not have is
skipped, and a table no section names goes to the section of its registry section.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import polars as pl

from tasks.analysis.charts import Chart
from tasks.analysis.disclosure import SUPPRESSED
from tasks.analysis.findings import Finding, Ref, cell, key_findings
from tasks.analysis.framework import QualitativeReport, QuestionSaid
from tasks.analysis.labels import label
from tasks.analysis.manifest import ReportContext
from tasks.analysis.publication import survey_minimum
from tasks.analysis.registry import TABLES, TableInfo
from tasks.analysis.tables import Analysis

CAVEATS = "caveats"
#: Research questions: key, heading, the protocol's question, what the data cannot say,
#: and the qualitative part still to come (None when the question is answered by data alone).
QUESTIONS: tuple[tuple[str, str, str, str, str | None], ...] = (
    ("1a", "1a. Referral routes and outcomes at closure",
     "What were the referral routes and outcomes at case closure for families receiving help "
     "from the Cluster between January and June 2021?",
     "The case records show who was referred, how and what was recorded at closure; they "
     "cannot say whether the Cluster caused these outcomes (there is no comparison group), and "
     "outcomes are as recorded by practitioners.", None),
    ("1b", "1b. Short-term specialist intervention (RES Team, Early Help Hub)",
     "Under what circumstances do families receive short-term intervention from a RES Hub "
     "while open to the Cluster and what are the outcomes associated with this?",
     "The referrals show the circumstances recorded (presenting issues, reasons) and the "
     "referral outcomes; with small numbers most cells are suppressed, and an association is "
     "not an effect of the specialist intervention.", None),
    ("1c", "1c. Is support delivered as intended?",
     "To what extent is support from the Cluster delivered as intended and what do "
     "practitioners identify as the potential barriers and facilitators for this?",
     "Administrative indicators (time to allocation, goals recorded and reviewed, length of "
     "support) describe delivery; they cannot explain barriers and facilitators.",
     "Practitioners' views (focus groups) are part of the qualitative strand, which has not "
     "been analysed yet."),
    ("2a", "2a. How and under what circumstances support works",
     "Is there evidence to support or extend understanding of how and under what "
     "circumstances support from the Cluster works?",
     "Goal scores and lengths of support by issue and service are descriptive; differences "
     "between groups rest on small numbers and are not tested or adjusted.",
     "Interviews with families and practitioners are part of the qualitative strand, which has "
     "not been analysed yet."),
    ("2b", "2b. Perceived impacts of support",
     "What do families and practitioners perceive to be the impacts of receiving support from "
     "the Cluster?",
     "The survey measures wellbeing once, after support, in a small sample: it cannot show "
     "change over time or attribute differences from the UK figures to the Cluster.",
     "Families' and practitioners' own accounts are part of the qualitative strand, which has "
     "not been analysed yet."),
    ("2c", "2c. Unintended consequences and negative effects",
     "Are there any unintended consequences or negative effects of receiving support from the "
     "Cluster?",
     "One yes/no survey question cannot say what the negative effects were or how serious "
     "they were; families who had a bad experience may be less likely to answer.",
     "What families said about negative effects is part of the qualitative strand, which has "
     "not been analysed yet."),
)
#: Registry sections -> research question, for tables and charts no override names.
SECTION_QUESTION = {"administrative": "1a", "demographics": "1a", "closure": "1a",
                    "specialist": "1b", "support": "1c", "survey": "2b"}
#: Tables and charts placed elsewhere than their registry section says.
OVERRIDES = {"goal_score_change": "2a", "length_of_support_by_issue": "2a",
             "length_of_support_by_service": "2a", "negative_effects": "2c",
             "response_rates": CAVEATS, "response_rates_by_route": CAVEATS,
             "nonresponse_check": CAVEATS, "length_of_support_km": "1c",
             "length_of_support_bands": "1c",
             # charts of the protocol's further measures sit with RQ 1a (referrals, closures)
             "referrals_received": "1a", "length_of_support_median": "1a"}
#: Difference in percentage points between respondents and frame worth naming.
NOTABLE_POINTS = 10.0
#: Heading of the qualitative part of a research question's section.
SAID_HEADING = "What families and practitioners said"
#: Label of the qualitative part when the analysis is a demo (simulated data).
SAID_SIMULATED = ("Simulated data (demo): these accounts come from a synthetic corpus of "
                  "interviews and focus groups, not from real families or practitioners.")
#: The Methods note on the qualitative strand (shown once it is analysed).
SAID_METHOD = ("Qualitative strand: transcripts of the family interviews and practitioner focus "
               "groups were de-identified, coded by the research team and charted with the "
               "Framework approach. How widely a subtheme was raised is said in words, of the "
               "participants of each strand who took part: \"all\" every one, \"most\" more "
               "than 60%, \"about half\" 40% to 60%, \"some\" fewer than 40%, \"one\" a "
               "single participant. Quotes come only from participants who agreed to be quoted, "
               "under their chosen pseudonym, within the study's word limit; participants who "
               "withdrew are left out.")
#: What a section says once the strand is analysed when no theme of the codebook informs it.
NO_THEME = "No theme of the qualitative strand's codebook informs this question."


@dataclass(frozen=True)
class CellView:
    """One table cell as shown: its text and whether it is a number (or "c"), right-aligned."""

    text: str
    numeric: bool


@dataclass(frozen=True)
class TableView:
    """One publication table as the report shows it (plain-language labels)."""

    info: TableInfo
    columns: Sequence[str]
    rows: Sequence[Sequence[CellView]]


@dataclass(frozen=True)
class FigureView:
    """One chart as the report shows it."""

    chart: Chart
    png: bytes

    @property
    def png_base64(self) -> str:
        """The PNG as base64 (a data URL's payload)."""
        return base64.b64encode(self.png).decode("ascii")


@dataclass(frozen=True)
class SectionView:
    """One report section: heading, question, key findings, charts, tables, limits."""

    key: str
    title: str
    question: str
    findings: Sequence[Finding]
    figures: Sequence[FigureView]
    tables: Sequence[TableView]
    cannot_say: str
    qualitative: str | None = None
    #: what families and practitioners said (analysed qualitative strand), else None
    said: QuestionSaid | None = None


@dataclass(frozen=True)
class Document:
    """The whole report: summary, caveats, research-question sections, methods notes."""

    simulated: bool
    summary: Sequence[Finding]
    caveats: SectionView
    sections: Sequence[SectionView]
    methods_notes: Sequence[str]


def _is_number(text: str) -> bool:
    """Whether a cell's text reads as a number."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def _cell(value: object) -> CellView:
    """A publication cell as shown: null empty, numbers and "c" as they are, codes as labels."""
    text = "" if value is None else str(value)
    numeric = text == SUPPRESSED or _is_number(text)
    return CellView(text if numeric or not text else label(text), numeric)


def table_view(info: TableInfo, df: pl.DataFrame) -> TableView:
    """A publication table as the report shows it."""
    return TableView(info, [label(c) for c in df.columns],
                     [[_cell(v) for v in row] for row in df.iter_rows()])


def place(name: str, section: str) -> str:
    """The report section of a table or chart."""
    return OVERRIDES.get(name, SECTION_QUESTION.get(section, "1a"))


def _views(key: str, publication: Mapping[str, pl.DataFrame], charts: Sequence[Chart],
           pngs: Mapping[str, bytes]) -> tuple[list[FigureView], list[TableView]]:
    figures = [FigureView(chart, pngs[chart.name]) for chart in charts
               if place(chart.name, chart.section) == key and chart.name in pngs]
    tables = [table_view(info, publication[info.name]) for info in TABLES
              if info.name in publication and place(info.name, info.section) == key]
    return figures, tables


def _number(ref: Ref | None) -> float | None:
    return None if ref is None else float(ref.text)


def nonresponse_words(pub: Mapping[str, pl.DataFrame]) -> Finding:
    """The non-response check in words: which published groups respondents over- or under-represent."""
    df = pub.get("nonresponse_check")
    if df is None:
        return Finding("There is no non-response check in this analysis.")
    parts: list[str] = []
    refs: list[Ref] = []
    compared = 0
    for row in df.iter_rows(named=True):
        where = {"characteristic": str(row["characteristic"]), "category": str(row["category"])}
        frame = cell(pub, "nonresponse_check", "frame_percent", **where)
        resp = cell(pub, "nonresponse_check", "respondents_percent", **where)
        f, r = _number(frame), _number(resp)
        if frame is None or resp is None or f is None or r is None:
            continue
        compared += 1
        if abs(r - f) >= NOTABLE_POINTS:
            word = "over" if r > f else "under"
            group = label(where["category"]).lower()
            kind = label(where["characteristic"]).lower()
            parts.append(f"{group} ({kind}: {resp.text}% of respondents against {frame.text}% "
                         f"of the frame, {word}-represented)")
            refs += [resp, frame]
    if not compared:
        return Finding("Respondents cannot be compared with the sampling frame in detail: the "
                       "non-response check's figures are suppressed (small numbers).")
    if not parts:
        return Finding("Where the non-response check is published, respondents resemble the "
                       "sampling frame: no group's share differs by ten percentage points or "
                       "more.")
    return Finding("Respondents differ from the sampling frame in: " + "; ".join(parts)
                   + ". Survey results may not represent those groups well.", tuple(refs))


def caveat_findings(analysis: Analysis, pub: Mapping[str, pl.DataFrame],
                    context: ReportContext, simulated: bool) -> list[Finding]:
    """The caveats, computed from the publication tables and the settings."""
    found: list[Finding] = []
    if simulated:
        found.append(Finding("DEMO: the survey answers in this report are SIMULATED, not real "
                             "families' answers. The survey figures show how the report works "
                             "and mean nothing about the Cluster."))
    found += [f for f in key_findings(pub)["summary"][1:]]
    respondents = cell(pub, "ons4", "respondents", measure="q1_life_satisfaction")
    minimum = survey_minimum(context.threshold)
    if analysis.survey_status == "responses":
        found.append(Finding(
            f"Survey figures rest on {respondents.text} respondents: estimates are imprecise, "
            "and the confidence intervals are wide." if respondents else
            f"Survey means need at least {minimum} respondents to be published; there are "
            "fewer, so they are suppressed.", (respondents,) if respondents else ()))
        found.append(nonresponse_words(pub))
        found.append(Finding(
            "The UK means (Annual Population Survey, year ending March 2022) are not a like-for-"
            "like comparison: they cover all adults, weighted to the UK population, asked on a "
            "different mode and at a different time, whereas these families were referred for "
            "early help and answered after support. The comparison gives context, not an effect "
            "of the Cluster."))
    found.append(_censoring(pub))
    found.append(Finding(
        f"Small numbers are suppressed: counts from 1 to {context.threshold} are shown as c, with "
        "further cells hidden so they cannot be worked out from totals; percentages and "
        f"statistics are hidden with their counts; survey means from fewer than {minimum} "
        "respondents are not published."))
    return found


def _censoring(pub: Mapping[str, pl.DataFrame]) -> Finding:
    episodes = cell(pub, "population", "episodes")
    closed = cell(pub, "population", "closed_episodes")
    km = ("The Kaplan-Meier table counts open episodes as censored (still open at the data "
          "date), so it does not understate long support." if "length_of_support_km" in pub
          else "")
    if episodes and closed:
        return Finding(f"Of {episodes.text} episodes, {closed.text} were closed. Length of "
                       "support from closed episodes alone leaves out episodes still open, which "
                       "tend to be the longest, so it understates typical length. " + km,
                       (episodes, closed))
    return Finding("Length of support from closed episodes alone leaves out episodes still open, "
                   "which tend to be the longest, so it understates typical length. " + km)


def qualitative_part(key: str, pending: str | None,
                     report: QualitativeReport | None) -> tuple[QuestionSaid | None, str | None]:
    """A section's qualitative part and its "not analysed yet" line (one of them, or neither)."""
    if report is None or not report.analysed:
        return None, pending
    said = report.questions.get(key)
    if said is not None:
        return said, None
    return None, NO_THEME if pending else None


def build_document(analysis: Analysis, publication: Mapping[str, pl.DataFrame],
                   charts: Sequence[Chart], pngs: Mapping[str, bytes],
                   context: ReportContext) -> Document:
    """The report's content, shared by the HTML and Word reports."""
    simulated = context.simulated_responses
    findings = key_findings(publication)
    sections = []
    for key, title, question, cannot_say, qualitative in QUESTIONS:
        figures, tables = _views(key, publication, charts, pngs)
        said = findings[key] or [Finding("No figure for this question is published in this "
                                         "analysis.")]
        spoken, pending = qualitative_part(key, qualitative, context.qualitative)
        sections.append(SectionView(key, title, question, said, figures, tables, cannot_say,
                                    pending, spoken))
    figures, tables = _views(CAVEATS, publication, charts, pngs)
    caveats = SectionView(CAVEATS, "Caveats: what to bear in mind", "",
                          caveat_findings(analysis, publication, context, simulated),
                          figures, tables, "")
    notes = list(analysis.notes)
    singles = [f"{label(m)}: {len(s)}" for m, s in analysis.single_respondent_strata.items() if s]
    notes.append("Sampling strata with a single respondent (they add no variance to the "
                 "standard error): " + "; ".join(singles) + "." if singles
                 else "No sampling stratum has a single respondent.")
    return Document(simulated, findings["summary"], caveats, sections, notes)
