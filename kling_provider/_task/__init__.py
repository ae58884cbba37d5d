"""A Kling task's own rules: exactly one paid submission, the task's result and how a task ends.

Below the operators, the sensor and the trigger, so that all three finish a task through the same
functions and no arrow climbs from the triggerer back up into the operators.
"""
