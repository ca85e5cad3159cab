# Per-dimension rules (issue 15 item 2): `per` on a rule, the dimension value on an incident, and one
# open incident per (rule, value) instead of per rule. Existing incidents get '' (a rule without per).

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('alerts', '0007_channels'),
    ]

    operations = [
        migrations.AddField(
            model_name='alertrule',
            name='per',
            field=models.CharField(blank=True, choices=[('user_id', 'user'), ('service', 'service'), ('feature', 'feature'), ('model', 'model')], max_length=16, null=True),
        ),
        migrations.AddField(
            model_name='incident',
            name='dimension_value',
            field=models.CharField(blank=True, default='', max_length=256),
        ),
        migrations.RemoveConstraint(
            model_name='incident',
            name='incident_one_open_per_rule',
        ),
        migrations.AddConstraint(
            model_name='incident',
            constraint=models.UniqueConstraint(condition=models.Q(('resolved_at__isnull', True)), fields=('rule', 'dimension_value'), name='incident_one_open_per_rule_value'),
        ),
    ]
