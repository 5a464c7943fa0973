/** alerts-page.js — the `/alerts` page (active and recent alerts; wall-alerts.js alertsPage). */
import { alertsPage } from "./wall-alerts.js";

alertsPage();
