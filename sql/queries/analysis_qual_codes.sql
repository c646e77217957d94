SELECT theme, subtheme, research_question, description, origin FROM qual_codes WHERE cluster_id = :cluster ORDER BY theme, subtheme
