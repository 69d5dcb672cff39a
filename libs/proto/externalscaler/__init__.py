"""Generated from proto/externalscaler (KEDA's external scaler contract); never edited."""
