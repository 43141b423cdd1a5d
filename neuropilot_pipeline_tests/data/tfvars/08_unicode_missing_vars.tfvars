# Équipe plateforme — seuils gérés par NeuroPilot ✓
region = "eu-central-1"
team   = "plateforme-ü"
