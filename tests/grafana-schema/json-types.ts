/**
 * Grafana's published Dashboard type (npm @grafana/schema), as JSON can spell it.
 *
 * The type uses TypeScript enums (ThresholdsMode, MappingType...); a JSON file holds
 * their *values* ("absolute", "value"), which TypeScript does not accept for an enum.
 * `AsJson` replaces every string enum by the union of its values (`${E}`) and leaves
 * everything else as Grafana wrote it, so the dashboard is checked against exactly
 * Grafana's field names, required fields and value sets. Numeric enums stay as they
 * are: TypeScript accepts a number literal that is one of their members.
 */
import type { Dashboard } from "@grafana/schema";

type AsJson<T> = T extends string
  ? `${T}`
  : T extends readonly (infer U)[]
    ? AsJson<U>[]
    : T extends object
      ? { [K in keyof T]: AsJson<T[K]> }
      : T;

export type DashboardJson = AsJson<Dashboard>;
