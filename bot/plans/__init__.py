from bot.plans.catalog import UnknownTemplate, get_template, template_names
from bot.plans.model import Direction, Metric, Phase, Plan, Rule, Step

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
