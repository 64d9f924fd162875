"""What tests share: fakes, builders, the live app. Test modules import from here, never from each other."""
