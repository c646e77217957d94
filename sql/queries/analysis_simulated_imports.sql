SELECT COUNT(*) AS simulated FROM response_imports WHERE cluster_id = :cluster AND file_name LIKE 'SIMULATED-%'
