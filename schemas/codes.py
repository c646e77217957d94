"""Code lists and table names of the extract and survey-export contract (extract-v1.md).

The extract's columns are described once, in the rules table ``schemas/columns.py``.
"""

from __future__ import annotations

# Table names, in load order (parents before children).
FAMILIES = "families"
CHILDREN = "children"
EPISODES = "episodes"
GOALS = "goals"
SPECIALIST_REFERRALS = "specialist_referrals"
TABLES: tuple[str, ...] = (FAMILIES, CHILDREN, EPISODES, GOALS, SPECIALIST_REFERRALS)

PREFERRED_CONTACT = ("email", "post", "phone")
LEAD_CARER_EMPLOYMENT = (
    "employed_full_time",
    "employed_part_time",
    "self_employed",
    "unemployed",
    "not_seeking_work",
    "unknown",
)
ETHNICITY = {
    "WBRI": "White British",
    "WIRI": "White Irish",
    "WIRT": "Traveller of Irish heritage",
    "WOTH": "Any other White background",
    "WROM": "Gypsy/Roma",
    "MWBC": "White and Black Caribbean",
    "MWBA": "White and Black African",
    "MWAS": "White and Asian",
    "MOTH": "Any other mixed background",
    "AIND": "Indian",
    "APKN": "Pakistani",
    "ABAN": "Bangladeshi",
    "AOTH": "Any other Asian background",
    "BCRB": "Black Caribbean",
    "BAFR": "Black African",
    "BOTH": "Any other Black background",
    "CHNE": "Chinese",
    "OOTH": "Any other ethnic group",
    "REFU": "Refused",
    "NOBT": "Information not yet obtained",
}
ETHNICITY_CODES: tuple[str, ...] = tuple(ETHNICITY)
GENDER = ("male", "female", "other", "not_known")
SCHOOL_PHASE = ("primary", "secondary")
REFERRAL_ROUTE = ("school", "childrens_services", "health_via_spa", "self", "other")
PRESENTING_ISSUES = (
    "child_mental_health",
    "parental_mental_health",
    "housing",
    "overcrowding",
    "parental_conflict",
    "parenting",
    "domestic_abuse",
    "substance_misuse",
    "school_attendance",
    "financial_hardship",
    "other",
)
SERVICES = ("family_support", "child_therapy", "adult_counselling", "attendance_support")
LEAD_WORKER_ROLE = (
    "targeted_services_worker",
    "child_family_practitioner",
    "therapist",
    "counsellor",
    "attendance_officer",
)
CLOSURE_OUTCOME = (
    "goals_achieved",
    "goals_partially_achieved",
    "goals_not_achieved",
    "disengaged",
    "moved_away",
    "stepped_up_to_social_care",
    "other",
)
ONWARD_REFERRAL = (
    "none",
    "childrens_social_care",
    "camhs",
    "adult_mental_health",
    "housing_service",
    "domestic_abuse_service",
    "other",
)
SPECIALIST_SERVICE = ("res_team", "early_help_hub")
SPECIALIST_OUTCOME = ("returned_to_cluster", "stepped_up_to_social_care", "closed", "ongoing")

YES_VALUES = ("y", "yes", "true", "1")
NO_VALUES = ("n", "no", "false", "0")

# Survey response export.
SURVEY_MODE = ("online", "paper", "phone")
ONS4_MEASURES = (
    "q1_life_satisfaction",
    "q2_worthwhile",
    "q3_happy_yesterday",
    "q4_anxious_yesterday",
)
SCALING_QUESTIONS = (
    "q5_child_wellbeing",
    "q6_parenting_confidence",
    "q7_help_with_difficulties",
    "q8_worker_relationship",
)
SCORE_QUESTIONS = ONS4_MEASURES + SCALING_QUESTIONS
YES_NO_QUESTIONS = ("q9_negative_effects", "q10_interview_opt_in")

SURVEY_COLUMNS = ("token", "submitted_at", "mode") + SCORE_QUESTIONS + YES_NO_QUESTIONS
