"""``tjctl``: the command line of trainingjob-operator, on top of every component.

It only puts together the commands each component registers (core's table and local runs,
the trainer's datasets, the operator, the UI) and turns their errors into one ``error:``
line. Development tools add commands through the ``tjctl.commands`` entry-point group
(the separate ``trainingjob-devcluster`` distribution in ``devcluster/`` does), so the
product never imports them.
"""
