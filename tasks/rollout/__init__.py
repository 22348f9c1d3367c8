"""The rollout: Tomcat reinstalled on a serving fleet in waves behind its load balancer.

`plan` (pure: waves, error allowance, versions, the hosts' states), `work` (the fleet and
one wave's AWS and SSH work), `report` (the artifacts' text), `wave` (the Prefect task).
"""
