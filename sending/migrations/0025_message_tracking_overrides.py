from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ('sending', '0024_mtastspolicy_failing_since'),
    ]

    operations = [
        migrations.AddField(
            model_name="message",
            name="track_opens",
            field=models.BooleanField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="message",
            name="track_clicks",
            field=models.BooleanField(blank=True, null=True),
        ),
    ]
