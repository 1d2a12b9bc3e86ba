from bot.domain.plans.catalog import UnknownTemplate, get_template, template_names
from bot.domain.plans.model import Direction, Metric, Phase, Plan, Rule, Step

__all__ = [
    "Direction",
    "Metric",
    "Phase",
    "Plan",
    "Rule",
    "Step",
    "UnknownTemplate",
    "get_template",
    "template_names",
]
