"""`python -m demand_assets.serving`: the service, bound as `entrypoint.bind_plan` decides."""

from demand_assets.serving.entrypoint import main

main()
