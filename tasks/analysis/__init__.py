"""The analysis stage: study data to restricted and publication tables, charts, workbook and report."""
