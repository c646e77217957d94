"""The coding round trip (qualitative-v1.md §4): codebook, REFI-QDA export and import, the Excel route.

The pipeline does not code. ``coding export`` gives the researchers the approved, de-identified
transcripts as a REFI-QDA project (or an Excel coding sheet) with the study codebook and the
participants as cases; ``coding import`` reads their coded project back into coded segments,
one per (selection, speaker turn), after checking that every coded text is the one exported.
"""
