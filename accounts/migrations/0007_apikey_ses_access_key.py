from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0006_access"),
    ]

    operations = [
        migrations.AddField(
            model_name="apikey",
            name="ses_access_key_id",
            field=models.CharField(blank=True, max_length=20, null=True, unique=True),
        ),
        migrations.AddField(
            model_name="apikey",
            name="ses_secret_encrypted",
            field=models.TextField(blank=True),
        ),
    ]
