"""Text of the SYNTHETIC qualitative corpus: questions, answers, planted sentences, codebook (DEMO ONLY).

Plain data for ``tasks.demo.qualitative``. The sentences are written to sound like early-help
interviews and focus groups; none comes from a real transcript. Rules the generator relies on:
no colon anywhere (a colon would look like a speaker label), and capitalised words only at the
start of a sentence, in the slots, or where a real transcript has them (NHS, CAMHS, GP, Monday).
A few characters outside ASCII (an en dash, an ellipsis, a curly apostrophe, an accent and one
emoji outside the Basic Multilingual Plane) make code-point positions differ from bytes and from
UTF-16 units, as REFI-QDA positions must be counted in code points.
"""

from __future__ import annotations

#: Topics of a family group interview: (topic, interviewer questions, family answers).
FAMILY_TOPICS: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("access",
     ("Can you tell me how you first got support from the early help service?",
      "How did you first hear about early help, and what made you get in touch?"),
     ("It was the school that suggested it, because things were getting really hard at home.",
      "I rang them myself after a friend told me about it.",
      "Our health visitor put the referral in at the caf\u00e9, I did not even know it existed.",
      "Honestly I was worried it meant social services would get involved.",
      "The form was long but the lady at the front desk helped me fill it in.",
      "I had been asking for help for about a year before anyone came out.",
      "The GP mentioned it when I went in about my own sleep.")),
    ("waiting",
     ("How long did you wait before someone got in touch with you?",
      "What was the wait like between asking for help and getting it?"),
     ("We waited about six weeks, which felt like forever when you are struggling.",
      "It was quick actually \u2013 someone phoned within a week.",
      "Nobody told us what was happening while we waited, that was the worst part.",
      "By the time they came the crisis had sort of passed.",
      "We were on a waiting list for CAMHS as well, so it was waiting on top of waiting.",
      "They rang on a Monday and came out that Friday, which surprised me.")),
    ("worker",
     ("What was it like working with your lead worker?",
      "How did you get on with the person who worked with your family?"),
     ("She really listened, she did not judge me at all.",
      "He came to the house every week and the kids loved him.",
      "We had three different workers in six months, so we kept starting again.",
      "She was honest with me even when I did not want to hear it.",
      "I could text her and she would always get back to me the same day.",
      "It felt like somebody was on our side for once.",
      "Having one person who knew the whole story made a big difference.")),
    ("goals",
     ("Did you set goals together, and how did that go?",
      "Can you say a bit about the plan you made with your worker?"),
     ("We wrote down three goals, mostly about mornings and getting to school on time.",
      "The goals were ours, not theirs, which made a difference.",
      "I didn\u2019t really understand the plan at first but it made sense later.",
      "We met most of them, the bedtime one is still a work in progress.",
      "We looked at the plan again every few weeks and changed it when things moved on.")),
    ("impact",
     ("What difference, if any, has the support made for your family?",
      "Looking back, what helped the most?"),
     ("Home is calmer now, we shout a lot less.",
      "I feel more confident as a parent, I know what to do when things kick off.",
      "His attendance went up and he actually wants to go in now.",
      "It helped me see I was not a bad mum, I just needed a hand.",
      "To be honest not much changed, but it was good to have someone to talk to.",
      "The parenting course was the thing that helped me most.",
      "We got through Christmas without a single row\u2026 which was a first.")),
    ("barriers",
     ("Was there anything that made it harder to get help or to keep going?",
      "What got in the way, if anything?"),
     ("Appointments were always in school hours and I work shifts.",
      "The bus to the family centre takes ages, so I missed a couple of sessions.",
      "I was embarrassed to ask at first.",
      "Different services kept asking us the same questions over and over.",
      "My phone kept running out of credit so they could not always reach me.")),
    ("school",
     ("How did the school fit in with all of this?",
      "Did the school and your worker work together?"),
     ("The school were brilliant, the pastoral lead kept an eye on him.",
      "School and the worker talked to each other, so I did not have to repeat everything.",
      "I felt the school just wanted to pass him on to someone else.",
      "The meetings at school were a bit much, lots of people around one table.")),
    ("closing",
     ("Is there anything else you would like to say before we finish?",
      "Thank you all, is there anything we have not asked about that matters to you?"),
     ("Just that I would recommend it to anyone.",
      "I wish we had had it sooner.",
      "Thank you for asking us, nobody usually does.",
      "Keep it going, because families like ours need it.")),
)

#: Topics of a practitioner focus group: (topic, facilitator questions, practitioner answers).
PRACTITIONER_TOPICS: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("access",
     ("How do families usually come to early help in your area?",
      "Where do most of your referrals come from at the moment?"),
     ("Most of ours come through schools, some through health visitors.",
      "We get a lot of self-referrals now that the front door is open to parents.",
      "Families often come to us when they are already at crisis point.",
      "The GP surgeries hardly ever refer, which is a shame.")),
    ("capacity",
     ("What are waiting times and caseloads like for you?",
      "How quickly can you get to a family once they are referred?"),
     ("Caseloads are high, I have got eighteen families at the moment.",
      "The waiting list is about five weeks, longer in the summer.",
      "We try to make contact within a week even if the full assessment takes longer.",
      "When someone is off sick the whole team feels it straight away.")),
    ("relationship",
     ("What makes the relationship with a family work, or not?",
      "How do you build trust with the families you work with?"),
     ("The relationship is everything, if they do not trust you nothing else works.",
      "Being the one consistent person for the family is what makes it work.",
      "I try to be really honest about what I can and cannot do.",
      "Parents can tell very quickly whether you are there to help or to check up on them.",
      "Turning up when you said you would matters more than anything clever.")),
    ("goals",
     ("How do you set goals with families?",
      "What does a good plan look like for you?"),
     ("We set goals with families using their own words.",
      "The plans are reviewed every six weeks, which keeps everyone focused.",
      "Small goals work better, a calmer bedtime rather than a new family.",
      "Sometimes the goal on paper is not the one the family really cares about.")),
    ("impact",
     ("What changes do you see in families by the end of your work?",
      "How do you know when the support has made a difference?"),
     ("You see it when a parent starts solving things before you get there.",
      "School attendance is the one schools notice first.",
      "Some families come back a year later, which tells you something.",
      "Parents tell us they feel less alone, and that matters as much as anything.")),
    ("partnership",
     ("What helps or gets in the way when you work with other services?",
      "How well do schools, health and early help work together here?"),
     ("Getting health partners to the team around the family meeting is hard.",
      "Information sharing with schools has got better since last year.",
      "The paperwork takes time away from the families.",
      "CAMHS thresholds are so high that we end up holding families we should not.",
      "The NHS and the council use different systems, so nothing talks to anything.")),
    ("closing",
     ("Is there anything else you want the evaluation to hear?",
      "Before we finish, is there one thing you would change?"),
     ("More time with each family, that is the one thing.",
      "Stable funding \U0001F44D so we are not worrying about our own jobs every March.",
      "Less duplication between services.",
      "Just that the model works when it is given the time to work.")),
)

#: Planted sentences of family interviews. Slot names say what fills them; a slot ending in
#: ``_own`` belongs to the speaker, ``other_`` to another participant of the session.
FAMILY_PLANTS: tuple[str, ...] = (
    "Like {other_first} said, it takes a lot to ask for help.",
    "{other_first_poss} story is a lot like mine.",
    "I met {other_full} at the school gate before all this.",
    "I know the {other_surname} family from the estate.",
    "My {child_relation} {child_own} is the reason I got in touch.",
    "{child_own_poss} teacher noticed first.",
    "Everyone calls me {nickname_own} anyway.",
    "My partner {partner_own} could not come today, he is at work.",
    "{child_own} goes to {school} now.",
    "We live just off {street}, near the shops.",
    "Everyone in {cluster} seems to know about it now.",
    "Our worker was {prac_full}, she was lovely.",
    "{prac_first} always made time for us.",
    "I emailed {email} but never heard back.",
    "The number they gave us was {phone}.",
    "You can ring {phone} any time in the week.",
    "They sent the letter to {postcode} instead of our new address.",
    "{child_own} was born on {date_slash}.",
    "The first meeting was on {date_long}.",
    "We finished on the {date_ordinal} I think.",
    "They wanted his NHS number, it is {nhs} I think.",
    "I found the form at {url} in the end.",
)

#: Planted sentences of practitioner focus groups.
PRACTITIONER_PLANTS: tuple[str, ...] = (
    "I agree with {other_first} about that.",
    "{other_first_poss} point about schools is right.",
    "{other_full} and I run the parenting group together.",
    "At {school} the pastoral team are really good.",
    "Our base on {street} is hard to get to by bus.",
    "In {cluster} we have two schools that refer almost everyone.",
    "{prac_full} used to manage the duty desk.",
    "Referrals go to {email} now.",
    "The duty line is {phone}.",
    "The online form is at {url}.",
    "Since {date_long} we have had a new referral form.",
    "The new family hub is at {postcode}.",
    "Health sometimes send an NHS number like {nhs} with no name attached.",
    "Everyone here calls me {nickname_own}.",
)

#: What the interviewer or facilitator says when naming the next speaker (a name on a team line).
TEAM_NAMES_NEXT = "Thank you, {other_first}. Does anyone else want to come in on that?"

FAMILY_PSEUDONYMS = ("Willow", "Juniper", "Kestrel", "Marigold", "Phoenix", "Saffron", "Indigo",
                     "Clover", "Bramble", "Sorrel")
PRACTITIONER_PSEUDONYMS = ("Heron", "Otter", "Linnet", "Badger", "Wren", "Plover", "Curlew")
SCHOOLS = ("Oakfield Primary", "Brookside Academy", "Hollins Park Primary", "Ravensworth High",
           "Fernlea Junior School")
STREETS = ("Mill Lane", "Ashgrove Road", "Tanner Street", "Quarry Bank Road", "Larkspur Close")
CLUSTERS = ("Northfield", "Westbrook", "Kirkdale", "Eastmoor")
POSTCODE_AREAS = ("LS", "M", "B", "S", "NE", "BD", "HU", "WF")
URLS = ("https://www.example.org/early-help/referral", "www.example.gov.uk/familyhub",
        "http://example.net/parents?page=2")
FAMILY_ROLES = ("parent", "parent", "parent", "carer", "grandparent", "other_adult")

#: The study codebook: (theme, research question, ((subtheme, description), ...)).
CODEBOOK: tuple[tuple[str, str, tuple[tuple[str, str], ...]], ...] = (
    ("Access to support", "1c", (
        ("Finding out about early help", "How families learnt the service existed and who suggested it"),
        ("Referral route", "Who referred: school, health, self-referral, other services"),
        ("Waiting times", "Time from asking for help to first contact and to support starting"),
    )),
    ("Relationship with lead worker", "2a", (
        ("Trust and honesty", "Whether the family felt listened to, not judged, told the truth"),
        ("Continuity", "One consistent worker versus changes of worker"),
        ("Shared goals", "Goals set with the family in their own words and reviewed"),
    )),
    ("Perceived impact", "2b", (
        ("Family wellbeing", "Calmer home, fewer conflicts, feeling less alone"),
        ("Parenting confidence", "Knowing what to do, feeling a capable parent"),
        ("School life", "Attendance, engagement and relationships with school"),
    )),
    ("Barriers and facilitators", "1c", (
        ("Service capacity", "Caseloads, waiting lists, staff absence, funding"),
        ("Partnership working", "Schools, health, CAMHS and other services working together"),
        ("Practical barriers", "Times, travel, phones, paperwork, stigma"),
        ("What helped", "Anything the family or practitioner said made support work"),
    )),
)

#: What the simulated coder looks for when it picks a subtheme for a selection (lower case).
CODING_CUES: dict[str, tuple[str, ...]] = {
    "Finding out about early help": ("hear about", "did not even know", "friend told", "gp mentioned",
                                     "front door"),
    "Referral route": ("referr", "suggested it", "health visitor", "rang them myself", "come through"),
    "Waiting times": ("wait", "within a week", "weeks", "quick actually", "came out that"),
    "Trust and honesty": ("listened", "judge", "honest", "trust", "on our side", "check up"),
    "Continuity": ("different workers", "one person", "consistent", "starting again", "whole story"),
    "Shared goals": ("goal", "plan", "own words"),
    "Family wellbeing": ("calmer", "shout", "row", "less alone", "someone to talk to"),
    "Parenting confidence": ("confident", "bad mum", "what to do", "solving things", "parenting course"),
    "School life": ("attendance", "school on time", "wants to go in", "pastoral", "school were"),
    "Service capacity": ("caseload", "waiting list", "off sick", "funding", "more time", "crisis point"),
    "Partnership working": ("school and the worker", "health partners", "information sharing", "camhs",
                            "nhs and the council", "duplication", "same questions", "meetings at school"),
    "Practical barriers": ("bus", "shifts", "embarrassed", "credit", "paperwork", "form was long"),
    "What helped": ("helped", "recommend", "difference", "works when", "made time"),
}
