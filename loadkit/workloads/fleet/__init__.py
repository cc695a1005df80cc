"""The agent fleet: agents, the fleet manager, the predictive autoscaler and allocation."""
