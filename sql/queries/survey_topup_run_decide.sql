-- Record the decision once: a decided run keeps its first decision.
UPDATE topup_runs SET decision = :decision, decided_at = :decided_at
WHERE cluster_id = :cluster_id AND flow_run_id = :flow_run_id AND decision IS NULL
