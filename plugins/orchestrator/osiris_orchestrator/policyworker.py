"""`python -m osiris_orchestrator.policyworker`: one bounded policy variant's worker
(see `bounded`)."""

from osiris_orchestrator.bounded import main

if __name__ == "__main__":
    main()
