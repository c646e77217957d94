"""The status stage: counts of extracts, survey waves and the retention schedule."""
