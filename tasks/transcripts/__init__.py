"""Interview and focus-group transcripts: intake, de-identification re-runs and approval (qualitative-v1.md §2–3)."""
