"""The qualitative strand (shared/spec/qualitative-v1.md): register, transcripts, coding, withdrawal."""
