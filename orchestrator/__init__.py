"""durable-rlm orchestrator: workflows, activities, worker, store, budgets, CLI, embedded dev stack."""
