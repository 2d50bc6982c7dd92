"""Adapters to outside engines. Importing ``siamtext`` never imports them; each module
imports its engine when called and names the extra to install when it is missing."""
